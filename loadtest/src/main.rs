fn main() {
    eprintln!("warren-loadtest: not implemented yet (see the load-test issue)");
    std::process::exit(2);
}
