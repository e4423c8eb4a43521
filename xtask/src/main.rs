//! `cargo xtask`: the workspace's automation, as a Rust program (no shell scripts).
//!
//! - `cargo xtask codegen [--check]` regenerates the `src/generated.rs` of `crm-client`,
//!   `hubspot-client` and `pipedrive-client`.
//! - `cargo xtask spec diff [--emit FILE]` compares the server's document with the spec.
//! - `cargo xtask spec changelog | check | release` compare the spec with the released one.
//! - `cargo xtask publish [--out DIR]` writes the published documents and reference page.
//! - `cargo xtask bench listing` measures the release server on both stores (see `bench`).

mod bench;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use xtask::publish::DIST_DIR;
use xtask::release::{RELEASED_PATH, ReleaseOutcome, Specs};
use xtask::{CodegenOutcome, SPEC_PATH, workspace_root};

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
    /// Generate the clients with progenitor: crates/crm-client/src/generated.rs from
    /// openapi/crm.yaml, and crates/{hubspot,pipedrive}-client/src/generated.rs from
    /// openapi/providers/{hubspot,pipedrive}.yaml.
    Codegen {
        /// Write nothing; fail, naming each stale file, if any file on disk is not what
        /// generation gives.
        #[arg(long)]
        check: bool,
    },
    /// Work with the OpenAPI document.
    Spec {
        #[command(subcommand)]
        command: SpecCommand,
    },
    /// Write the spec as OpenAPI 3.0.3 (YAML, JSON) and 3.1 (JSON), the reference page and
    /// the changelog, after the release gate and the conversion check pass.
    Publish {
        /// The directory to write to.
        #[arg(long, value_name = "DIR", default_value = DIST_DIR)]
        out: PathBuf,
    },
    /// Measure the release server on SQLite and PostgreSQL, side by side; writes
    /// <target>/bench/<benchmark>.md and .json.
    Bench {
        #[command(subcommand)]
        bench: bench::Bench,
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
    /// Print the changes from openapi/released/crm.yaml to openapi/crm.yaml as Markdown:
    /// breaking, additive, documentation.
    Changelog,
    /// Fail when a change breaks compatibility with the released spec and info.version's
    /// major was not raised.
    Check,
    /// Make openapi/crm.yaml the released spec (openapi/released/crm.yaml); needs a higher
    /// info.version when anything changed. Records the release first in CHANGELOG.md.
    Release {
        /// Release notes written by hand (Markdown), put above the listed changes.
        #[arg(long, value_name = "FILE")]
        notes: Option<PathBuf>,
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
        Command::Spec { command } => match command {
            SpecCommand::Diff { emit } => spec_diff(emit),
            SpecCommand::Changelog => spec_changelog(),
            SpecCommand::Check => spec_check(),
            SpecCommand::Release { notes } => spec_release(notes),
        },
        Command::Publish { out } => publish(out),
        Command::Bench { bench } => bench::run(bench).map(|()| ExitCode::SUCCESS),
    }
}

fn spec_changelog() -> Result<ExitCode> {
    let changelog = Specs::load(&workspace_root())?.changelog()?;
    print!("{}", changelog.to_markdown());
    Ok(ExitCode::SUCCESS)
}

fn spec_check() -> Result<ExitCode> {
    let changelog = Specs::load(&workspace_root())?.changelog()?;
    let count = |impact| changelog.of_impact(impact).count();
    println!(
        "{SPEC_PATH} {} against {RELEASED_PATH} {}: {} breaking, {} additive, {} documentation change(s)",
        changelog.current,
        changelog.released,
        count(crm_spec::Impact::Breaking),
        count(crm_spec::Impact::Additive),
        count(crm_spec::Impact::Documentation),
    );
    if let Err(error) = changelog.check() {
        for change in changelog.breaking() {
            eprintln!("breaking: {change}");
        }
        eprintln!("error: {error}");
        return Ok(ExitCode::FAILURE);
    }
    if let Err(note) = changelog.check_release() {
        println!("note: before the next release: {note}");
    }
    println!("ok: no breaking change without a new major version");
    Ok(ExitCode::SUCCESS)
}

fn spec_release(notes: Option<PathBuf>) -> Result<ExitCode> {
    let notes = notes
        .map(|path| {
            std::fs::read_to_string(&path)
                .with_context(|| format!("reading the release notes {}", path.display()))
        })
        .transpose()?;
    let (changelog, outcome) = xtask::release::release(&workspace_root(), notes.as_deref())?;
    match outcome {
        ReleaseOutcome::NothingToRelease => {
            println!("{SPEC_PATH} is the released spec already; nothing to release");
        }
        ReleaseOutcome::Released { path, version } => {
            print!("{}", changelog.to_markdown());
            println!(
                "released {version}: wrote {} and {}",
                path.display(),
                xtask::release::CHANGELOG_PATH
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn publish(out: PathBuf) -> Result<ExitCode> {
    let out = if out.is_absolute() {
        out
    } else {
        workspace_root().join(out)
    };
    let started = std::time::Instant::now();
    let report = xtask::publish::publish(&workspace_root(), &out, &mut |step| {
        println!("[{:>6.2}s] {step}", started.elapsed().as_secs_f64());
    })?;
    for file in &report.files {
        println!("  {} ({} bytes)", file.path.display(), file.bytes);
    }
    println!(
        "published {} in {:.2}s",
        report.version,
        report.elapsed.as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn codegen(check: bool) -> Result<ExitCode> {
    let reports = xtask::codegen(check)?;
    let mut stale = Vec::new();
    for report in &reports {
        let generated = report.target.generated_path();
        let took = report.generation_time.as_secs_f64();
        match report.outcome {
            CodegenOutcome::UpToDate => {
                println!("{generated} is up to date (generated in {took:.2}s)");
            }
            CodegenOutcome::Written => println!("wrote {generated} (generated in {took:.2}s)"),
            CodegenOutcome::Stale => {
                eprintln!(
                    "error: {generated} is stale: it is not what {} generates \
                     (generated in {took:.2}s).",
                    report.target.spec_path()
                );
                stale.push(generated);
            }
        }
    }
    if stale.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "error: {} stale generated file(s): {}. Run `cargo xtask codegen` and commit the result.",
        stale.len(),
        stale.join(", ")
    );
    Ok(ExitCode::FAILURE)
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
