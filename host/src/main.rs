fn main() -> std::process::ExitCode {
    epu::cli::main()
}
