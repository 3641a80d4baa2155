//! `policyctl certs`: write a CA and a serving certificate, print the caBundle.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::certs;
use crate::cli::CertsArgs;

const DAY: u64 = 24 * 3600;

pub fn run(args: CertsArgs) -> anyhow::Result<ExitCode> {
    let CertsArgs {
        out,
        dns,
        ip,
        days,
        ca_days,
        force,
    } = args;
    let generated = certs::generate(
        &dns,
        &ip,
        Duration::from_secs(u64::from(days) * DAY),
        Duration::from_secs(u64::from(ca_days) * DAY),
    )?;
    let written = if force {
        certs::write(&out, &generated)
    } else {
        certs::write_new(&out, &generated)
    }
    .with_context(|| format!("writing certificates to {}", out.display()))?;
    eprintln!(
        "wrote {}, {} and {}",
        written.ca.display(),
        written.cert.display(),
        written.key.display()
    );
    eprintln!("caBundle for the webhook configurations:");
    outln!("{}", generated.ca_bundle());
    Ok(ExitCode::SUCCESS)
}
