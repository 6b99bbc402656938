//! The tests' mock hub as a program, for measuring downloads without a network:
//! `cargo run --release -p tessera-integration-tests --example mock_hub -- ORG/NAME=DIR...`
//! serves each directory as the `main` revision of ORG/NAME, prints the URL to use as
//! `HF_ENDPOINT` on stdout, and serves until killed (scripts/startup-phases.sh uses it).

use std::io::Write;
use std::path::Path;

use tessera_integration_tests::mock_hub::{MockHub, MockRepo};

fn main() {
    let repos: Vec<MockRepo> = std::env::args()
        .skip(1)
        .enumerate()
        .map(|(i, arg)| {
            let Some((id, dir)) = arg.split_once('=') else {
                eprintln!("usage: mock_hub ORG/NAME=DIR...  (got `{arg}`)");
                std::process::exit(2);
            };
            if !Path::new(dir).join("config.json").is_file() {
                eprintln!("{dir} has no config.json");
                std::process::exit(2);
            }
            MockRepo::new(id, &format!("{:040x}", i + 1), Path::new(dir))
        })
        .collect();
    if repos.is_empty() {
        eprintln!("usage: mock_hub ORG/NAME=DIR...");
        std::process::exit(2);
    }
    let hub = MockHub::start(repos);
    println!("{}", hub.url);
    std::io::stdout().flush().expect("stdout");
    loop {
        std::thread::park();
    }
}
