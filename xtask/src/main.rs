//! `cargo xtask`: the workspace's automation, as a Rust program (no shell scripts).
//!
//! - `cargo xtask codegen [--check]` regenerates `crates/crm-client/src/generated.rs`.
//! - `cargo xtask spec diff [--emit FILE]` compares the server's document with the spec.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use xtask::{CodegenOutcome, GENERATED_PATH, SPEC_PATH};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Workspace automation for the unified CRM API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate crates/crm-client/src/generated.rs from openapi/crm.yaml with progenitor.
    Codegen {
        /// Write nothing; fail if the file on disk is not what generation gives.
        #[arg(long)]
        check: bool,
    },
    /// Work with the OpenAPI document.
    Spec {
        #[command(subcommand)]
        command: SpecCommand,
    },
}

#[derive(Subcommand)]
enum SpecCommand {
    /// Compare the server's document (crm_api::openapi(), normalised to 3.0) with
    /// openapi/crm.yaml; fail on any significant change.
    Diff {
        /// Also write the server's document, normalised to 3.0, to this JSON file.
        #[arg(long, value_name = "FILE")]
        emit: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Codegen { check } => codegen(check),
        Command::Spec {
            command: SpecCommand::Diff { emit },
        } => spec_diff(emit),
    }
}

fn codegen(check: bool) -> Result<ExitCode> {
    let report = xtask::codegen(check)?;
    let took = report.generation_time.as_secs_f64();
    match report.outcome {
        CodegenOutcome::UpToDate => {
            println!("{GENERATED_PATH} is up to date (generated in {took:.2}s)");
            Ok(ExitCode::SUCCESS)
        }
        CodegenOutcome::Written => {
            println!("wrote {GENERATED_PATH} (generated in {took:.2}s)");
            Ok(ExitCode::SUCCESS)
        }
        CodegenOutcome::Stale => {
            eprintln!(
                "error: {GENERATED_PATH} is stale: it is not what {SPEC_PATH} generates \
                 (generated in {took:.2}s). Run `cargo xtask codegen` and commit the result."
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

fn spec_diff(emit: Option<PathBuf>) -> Result<ExitCode> {
    let document = serde_json::to_value(crm_api::openapi())
        .context("serialising crm_api::openapi() to JSON")?;
    let (normalised, comparison) = xtask::spec_diff(&document)?;
    if let Some(path) = emit {
        let text = serde_json::to_string_pretty(&normalised)?;
        std::fs::write(&path, text + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!(
            "wrote the server's document, normalised to 3.0, to {}",
            path.display()
        );
    }
    print!("{comparison}");
    if comparison.is_compatible() {
        println!("the server's document is compatible with {SPEC_PATH}");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "error: the server's document is not compatible with {SPEC_PATH} \
             ({} significant change(s))",
            comparison.significant().count()
        );
        Ok(ExitCode::FAILURE)
    }
}
