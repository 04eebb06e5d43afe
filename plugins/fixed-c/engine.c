// fixed-c: keeps a fixed number of healthy instances, or the number a daily schedule gives for
// the time of day (UTC). A WebAssembly component built from C (see plugins/build.sh).
//
// Config: {"size": 3} or {"size": 2, "schedule": "08:00=6,18:30=2"}. From each listed time the
// schedule's count holds until the next one; before the first time of the day the last one
// still holds. Unhealthy instances are destroyed and replaced; extra ones go newest first.

#include "engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SLOTS 48

typedef struct {
    int minute; // of the day, UTC
    uint32_t count;
} slot_t;

typedef struct {
    uint32_t size;
    int nslots;
    slot_t slots[MAX_SLOTS];
} config_t;

static config_t config;
static bool initialized;
static uint32_t last_target = UINT32_MAX;

// The live instances, as the snapshots told them.
static epu_engine_types_instance_t *table;
static size_t table_len, table_cap;

static bool fail(engine_string_t *err, const char *msg) {
    engine_string_dup(err, msg);
    return false;
}

// ---- A small reader for the flat JSON object of the config ----

typedef struct {
    const char *p, *end;
} reader_t;

static void skip_ws(reader_t *r) {
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')) r->p++;
}

// Reads a string without escapes into buf; false if it is not one.
static bool read_string(reader_t *r, char *buf, size_t cap) {
    if (r->p >= r->end || *r->p != '"') return false;
    r->p++;
    size_t n = 0;
    while (r->p < r->end && *r->p != '"') {
        if (*r->p == '\\' || n + 1 >= cap) return false;
        buf[n++] = *r->p++;
    }
    if (r->p >= r->end) return false;
    r->p++;
    buf[n] = 0;
    return true;
}

// A whole number >= 0 from a JSON number or a numeric string.
static bool whole(const char *text, uint32_t *out) {
    char *end;
    double v = strtod(text, &end);
    while (*end == ' ') end++;
    if (end == text || *end != 0 || v < 0 || v > 1e9 || v != (double)(uint32_t)v) return false;
    *out = (uint32_t)v;
    return true;
}

static int cmp_slot(const void *a, const void *b) {
    return ((const slot_t *)a)->minute - ((const slot_t *)b)->minute;
}

// "HH:MM=N,HH:MM=N" into sorted slots.
static bool parse_schedule(const char *s, config_t *c, char *why, size_t cap) {
    c->nslots = 0;
    while (*s) {
        unsigned h, m, n;
        int used = 0;
        if (c->nslots == MAX_SLOTS || sscanf(s, "%2u:%2u=%u%n", &h, &m, &n, &used) != 3 || h > 23 || m > 59) {
            snprintf(why, cap, "schedule must be HH:MM=N entries separated by commas (at most %d), at '%.20s'",
                     MAX_SLOTS, s);
            return false;
        }
        c->slots[c->nslots++] = (slot_t){(int)(h * 60 + m), n};
        s += used;
        if (*s == ',') s++;
        else if (*s) {
            snprintf(why, cap, "schedule entries are separated by commas, at '%.20s'", s);
            return false;
        }
    }
    qsort(c->slots, c->nslots, sizeof(slot_t), cmp_slot);
    return true;
}

// Applies the JSON object `text` on top of `base`; the result is whole or nothing.
static bool parse_config(const engine_string_t *text, const config_t *base, config_t *out,
                         char *why, size_t cap) {
    *out = *base;
    reader_t r = {(const char *)text->ptr, (const char *)text->ptr + text->len};
    skip_ws(&r);
    if (r.p >= r.end || *r.p != '{') {
        snprintf(why, cap, "config must be a JSON object");
        return false;
    }
    r.p++;
    for (;;) {
        char key[32], value[512];
        skip_ws(&r);
        if (r.p < r.end && *r.p == '}') break;
        if (!read_string(&r, key, sizeof key)) {
            snprintf(why, cap, "config is not a flat JSON object of known keys");
            return false;
        }
        skip_ws(&r);
        if (r.p >= r.end || *r.p++ != ':') {
            snprintf(why, cap, "config is not valid JSON after '%s'", key);
            return false;
        }
        skip_ws(&r);
        bool quoted = r.p < r.end && *r.p == '"';
        if (quoted) {
            if (!read_string(&r, value, sizeof value)) {
                snprintf(why, cap, "%s: the string is too long or has escapes", key);
                return false;
            }
        } else {
            size_t n = 0;
            while (r.p < r.end && *r.p != ',' && *r.p != '}' && n + 1 < sizeof value) value[n++] = *r.p++;
            while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\n')) n--;
            value[n] = 0;
        }
        if (strcmp(key, "size") == 0) {
            if (!whole(value, &out->size)) {
                snprintf(why, cap, "size must be a whole number >= 0, got %s", value);
                return false;
            }
        } else if (strcmp(key, "schedule") == 0) {
            if (!quoted) {
                snprintf(why, cap, "schedule must be a string like \"08:00=6,18:30=2\", got %s", value);
                return false;
            }
            if (!parse_schedule(value, out, why, cap)) return false;
        } else {
            snprintf(why, cap, "unknown key '%s' (known keys: size, schedule)", key);
            return false;
        }
        skip_ws(&r);
        if (r.p < r.end && *r.p == ',') {
            r.p++;
            continue;
        }
        if (r.p < r.end && *r.p == '}') break;
        snprintf(why, cap, "config is not valid JSON after '%s'", key);
        return false;
    }
    return true;
}

static bool configure(engine_string_t *text, engine_string_t *err, const config_t *base) {
    char why[160];
    config_t next;
    bool ok = parse_config(text, base, &next, why, sizeof why);
    engine_string_free(text);
    if (!ok) return fail(err, why);
    config = next;
    initialized = true;
    return true;
}

bool exports_engine_initialize(engine_string_t *text, engine_string_t *err) {
    config_t defaults = {0};
    return configure(text, err, &defaults);
}

bool exports_engine_reconfigure(engine_string_t *text, engine_string_t *err) {
    return configure(text, err, &config);
}

void exports_engine_dying(void) {}

// One key of the description.
static void describe_key(epu_engine_types_config_key_t *k, const char *name,
                         epu_engine_types_value_kind_t kind, const char *doc, const char *def) {
    memset(k, 0, sizeof *k);
    engine_string_dup(&k->name, name);
    k->kind = kind;
    engine_string_dup(&k->doc, doc);
    k->default_.is_some = true;
    engine_string_dup(&k->default_.val, def);
}

void exports_engine_describe(engine_description_t *ret) {
    memset(ret, 0, sizeof *ret);
    engine_string_dup(&ret->name, "fixed-c");
    engine_string_dup(&ret->version, "1.0.0");
    engine_string_dup(&ret->summary, "a fixed size, or a daily schedule of sizes (UTC)");
    epu_engine_types_config_key_t *keys = calloc(2, sizeof *keys);
    describe_key(&keys[0], "size", EPU_ENGINE_TYPES_VALUE_KIND_INTEGER,
                 "the healthy instances to keep when no schedule is given", "0");
    keys[0].min = (engine_option_f64_t){true, 0};
    keys[0].max = (engine_option_f64_t){true, 1e9};
    describe_key(&keys[1], "schedule", EPU_ENGINE_TYPES_VALUE_KIND_TEXT,
                 "sizes by time of day, UTC: \"08:00=6,18:30=2\" (empty: size all day)", "\"\"");
    ret->config.ptr = keys;
    ret->config.len = 2;
    ret->more_keys = false;
}

// ---- Deciding ----

static bool ended(uint8_t state) { return state >= EPU_ENGINE_TYPES_INSTANCE_STATE_TERMINATED; }

// Draining instances are leaving: they do not count.
static bool counts(const epu_engine_types_instance_t *i) {
    return i->state < EPU_ENGINE_TYPES_INSTANCE_STATE_TERMINATING && !i->draining;
}

static bool unhealthy(const epu_engine_types_instance_t *i) {
    bool bad_health = i->health != EPU_ENGINE_TYPES_HEALTH_OK && i->health != EPU_ENGINE_TYPES_HEALTH_UNKNOWN;
    return i->health == EPU_ENGINE_TYPES_HEALTH_ZOMBIE ||
           (counts(i) && (i->state == EPU_ENGINE_TYPES_INSTANCE_STATE_RUNNING_FAILED || bad_health));
}

static void apply(const engine_snapshot_t *s) {
    if (s->full) table_len = 0;
    for (size_t k = 0; k < s->instances.len; k++) {
        const epu_engine_types_instance_t *in = &s->instances.ptr[k];
        size_t at = 0;
        while (at < table_len && table[at].handle != in->handle) at++;
        if (ended(in->state)) {
            if (at < table_len) table[at] = table[--table_len];
            continue;
        }
        if (at == table_len) {
            if (table_len == table_cap) {
                table_cap = table_cap ? table_cap * 2 : 16;
                table = realloc(table, table_cap * sizeof *table);
                if (!table) abort();
            }
            table_len++;
        }
        table[at] = *in;
    }
}

static uint32_t target_at(double now) {
    if (config.nslots == 0) return config.size;
    long day = (long)now % 86400;
    int minute = (int)(day / 60);
    uint32_t count = config.slots[config.nslots - 1].count; // from yesterday's last slot
    for (int k = 0; k < config.nslots && config.slots[k].minute <= minute; k++) count = config.slots[k].count;
    return count;
}

static int newest_first(const void *a, const void *b) {
    uint64_t x = ((const epu_engine_types_instance_t *)a)->handle;
    uint64_t y = ((const epu_engine_types_instance_t *)b)->handle;
    return x < y ? 1 : x > y ? -1 : 0;
}

bool exports_engine_decide(engine_snapshot_t *s, engine_decision_t *ret, engine_string_t *err) {
    if (!initialized) {
        epu_engine_types_snapshot_free(s);
        return fail(err, "decide called before initialize");
    }
    apply(s);
    uint32_t target = target_at(s->now);
    epu_engine_types_snapshot_free(s);

    memset(ret, 0, sizeof *ret);
    ret->destroy.ptr = malloc((table_len + 1) * sizeof(uint64_t));
    if (!ret->destroy.ptr) abort();
    qsort(table, table_len, sizeof *table, newest_first);
    uint32_t healthy = 0;
    bool settling = false;
    for (size_t k = 0; k < table_len; k++) {
        if (unhealthy(&table[k])) ret->destroy.ptr[ret->destroy.len++] = table[k].handle;
        else if (counts(&table[k])) {
            healthy++;
            settling |= table[k].state != EPU_ENGINE_TYPES_INSTANCE_STATE_RUNNING;
        }
    }
    // Extra instances go newest first (the table is sorted so), protected ones last: the
    // daemon would not destroy them while they are healthy.
    for (int pass = 0; pass < 2; pass++) {
        for (size_t k = 0; k < table_len && healthy > target; k++) {
            if (counts(&table[k]) && !unhealthy(&table[k]) && table[k].protected_ == (pass == 1)) {
                ret->destroy.ptr[ret->destroy.len++] = table[k].handle;
                healthy--;
            }
        }
    }
    if (healthy < target) {
        ret->launches.ptr = calloc(1, sizeof(epu_engine_types_launch_t));
        if (!ret->launches.ptr) abort();
        ret->launches.ptr[0].count = target - healthy;
        ret->launches.len = 1;
    }
    if (target != last_target) {
        char line[64];
        snprintf(line, sizeof line, "holding %u instances", (unsigned)target);
        engine_string_t msg;
        engine_string_set(&msg, line);
        engine_log(EPU_ENGINE_TYPES_LOG_LEVEL_INFO, &msg);
        last_target = target;
    }
    bool changing = ret->launches.len > 0 || ret->destroy.len > 0 || settling;
    ret->status = changing ? EPU_ENGINE_TYPES_ENGINE_STATUS_PENDING : EPU_ENGINE_TYPES_ENGINE_STATUS_STABLE;
    return true;
}
