//! `filefetch fetch`: download one file, with a progress bar when a person is watching.

use std::io::{self, IsTerminal, Write};
use std::ops::ControlFlow;
use std::sync::OnceLock;

use filefetch::{Fetch, FetchOptions};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::args::FetchArgs;
use crate::exit::{Exit, Failure};
use crate::signals::Interrupt;

const BAR_TEMPLATE: &str = "{wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}";

/// Downloads the file; on success reports its size and where it went.
pub fn run(args: FetchArgs) -> Result<(), Failure> {
    // The first signal stops the transfer (and removes its temporary file); a second one
    // ends the process at once.
    let interrupt = Interrupt::install(2)
        .map_err(|e| Failure::new(Exit::Other, format!("cannot handle signals: {e}")))?;
    let mut options = FetchOptions::builder()
        .idle_timeout(args.timeout)
        .connect_timeout(args.connect_timeout)
        .min_rate(args.speed_limit, args.speed_time)
        .overwrite(args.overwrite)
        .interrupt(move || interrupt.raised());
    if let Some(output) = &args.output {
        options = options.output(output);
    }
    if let Some(limit) = args.max_time {
        options = options.max_time(limit);
    }
    if let Some(limit) = args.max_size {
        options = options.max_size(limit);
    }
    let options = options.build()?;

    let show_progress = !args.quiet && io::stderr().is_terminal();
    // Created on the first report, once the size is known.
    let bar: OnceLock<ProgressBar> = OnceLock::new();
    let result = Fetch::new(&args.host, args.port, &args.name)
        .options(&options)
        .progress(|received, total| {
            if show_progress {
                bar.get_or_init(|| new_bar(total)).set_position(received);
            }
            ControlFlow::Continue(())
        })
        .to_file();
    if let Some(bar) = bar.get() {
        match result {
            Ok(_) => bar.finish_and_clear(),
            Err(_) => bar.abandon(),
        }
    }

    let fetched = result?;
    if !args.quiet {
        // The file is in place whatever happens to stdout (a closed pipe, say).
        let _ = writeln!(
            io::stdout(),
            "received {} bytes into {}",
            fetched.bytes,
            fetched.path.display()
        );
    }
    Ok(())
}

fn new_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(BAR_TEMPLATE) {
        bar.set_style(style);
    }
    bar
}
