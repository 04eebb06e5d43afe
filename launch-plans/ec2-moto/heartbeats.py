"""Plays the workers of epu's instances on an EC2 endpoint ($MOTO_URL): every second, each
running instance tagged `epu:instance` gets a heartbeat, sent to the URL in its user data with
its own token, as the real worker on that machine would."""
import base64, json, os, sys, time, urllib.request

import boto3

ec2 = boto3.client(
    "ec2",
    endpoint_url=os.environ["MOTO_URL"],
    region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
    aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
)
user_data = {}


def running():
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[
            {"Name": "tag-key", "Values": ["epu:instance"]},
            {"Name": "instance-state-name", "Values": ["running"]},
        ]
    )
    for page in pages:
        for r in page["Reservations"]:
            yield from r["Instances"]


def data_of(instance_id):
    if instance_id not in user_data:
        attr = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
        user_data[instance_id] = json.loads(base64.b64decode(attr["UserData"]["Value"]))
    return user_data[instance_id]


def beat(data):
    body = json.dumps({"node_id": data["node_id"], "state": "ok"}).encode()
    req = urllib.request.Request(
        data["heartbeat_url"],
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": "Bearer " + data["token"]},
    )
    urllib.request.urlopen(req, timeout=5).read()


print("heartbeats: sending for the running instances at", os.environ["MOTO_URL"], flush=True)
while True:
    try:
        for inst in running():
            try:
                beat(data_of(inst["InstanceId"]))
            except Exception as e:  # one instance's failure must not stop the others
                print(f"heartbeats: {inst['InstanceId']}: {e}", file=sys.stderr, flush=True)
    except Exception as e:
        print(f"heartbeats: listing instances: {e}", file=sys.stderr, flush=True)
    time.sleep(1)
