//! Reading the guest's serial console: kernel noise, then the command's output between two
//! markers that the guest's init prints.
//!
//! The console carries the kernel's messages, init's markers and the command's stdout on
//! one byte stream. Init prints, each on a line of its own and each preceded by a newline:
//! - `ISOLAB-SANDBOX-BEGIN <nonce>` right before it starts the command;
//! - `ISOLAB-SANDBOX-EXIT <nonce> <status>` right after the command ends;
//! - `ISOLAB-SANDBOX-SETUP-FAILED <nonce> <step>` when a set-up step fails (no command runs).
//!
//! The nonce is random per run and known only to the host and init, so nothing the command
//! prints can be mistaken for a marker. The newline before the exit marker is init's, not
//! the command's: the command's output is exactly the bytes between the begin line and
//! that newline, whether or not it ended in a newline of its own. Init puts the console
//! tty in raw mode before the command starts, so its bytes arrive unchanged (no `\r\n`).

pub const BEGIN: &str = "ISOLAB-SANDBOX-BEGIN";
pub const EXIT: &str = "ISOLAB-SANDBOX-EXIT";
pub const SETUP_FAILED: &str = "ISOLAB-SANDBOX-SETUP-FAILED";

/// What a chunk of console output meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Init finished setting up and started the command.
    Began,
    /// More of the command's output, in order.
    Output(Vec<u8>),
    /// The command ended with this status (128+n when killed by signal n).
    Exited(u8),
    /// Init could not set up the sandbox; the step that failed.
    SetupFailed(String),
}

#[derive(Debug)]
enum Phase {
    /// Kernel messages, line by line, until the begin marker.
    Boot { line: Vec<u8> },
    /// The command's output; `held` is a tail that might be the start of the exit marker.
    Command { held: Vec<u8> },
    /// The exit marker or a set-up failure was seen; the rest is shutdown noise.
    Done,
}

/// Turns console bytes, in whatever chunks they arrive, into [`Event`]s.
#[derive(Debug)]
pub struct ConsoleParser {
    nonce: String,
    exit_marker: Vec<u8>,
    phase: Phase,
}

impl ConsoleParser {
    pub fn new(nonce: &str) -> Self {
        ConsoleParser {
            nonce: nonce.to_owned(),
            exit_marker: format!("\n{EXIT} {nonce} ").into_bytes(),
            phase: Phase::Boot { line: Vec::new() },
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    pub fn feed(&mut self, mut chunk: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        while !chunk.is_empty() {
            match &mut self.phase {
                Phase::Boot { line } => {
                    let Some(end) = chunk.iter().position(|&b| b == b'\n') else {
                        line.extend_from_slice(chunk);
                        break;
                    };
                    line.extend_from_slice(&chunk[..end]);
                    chunk = &chunk[end + 1..];
                    let text = String::from_utf8_lossy(line)
                        .trim_end_matches('\r')
                        .to_owned();
                    line.clear();
                    if let Some(event) = self.boot_line(&text) {
                        self.phase = match event {
                            Event::Began => Phase::Command { held: Vec::new() },
                            _ => Phase::Done,
                        };
                        events.push(event);
                    }
                }
                Phase::Command { held } => {
                    held.extend_from_slice(chunk);
                    chunk = &[];
                    events.extend(self.command_bytes());
                }
                Phase::Done => break,
            }
        }
        events
    }

    fn boot_line(&self, line: &str) -> Option<Event> {
        let mut words = line.splitn(3, ' ');
        let (marker, nonce) = (words.next()?, words.next()?);
        if nonce != self.nonce {
            return None;
        }
        match marker {
            BEGIN => Some(Event::Began),
            SETUP_FAILED => Some(Event::SetupFailed(words.next().unwrap_or("").to_owned())),
            _ => None,
        }
    }

    /// Releases what is certainly output; keeps back only what could begin the exit marker.
    fn command_bytes(&mut self) -> Vec<Event> {
        let Phase::Command { held } = &mut self.phase else {
            return Vec::new();
        };
        let marker = &self.exit_marker;
        if let Some(at) = find(held, marker) {
            let rest = &held[at + marker.len()..];
            let Some(end) = rest.iter().position(|&b| b == b'\n') else {
                // The status has not arrived yet: release the output before the marker.
                let output: Vec<u8> = held.drain(..at).collect();
                return output_event(output).into_iter().collect();
            };
            let status_text = String::from_utf8_lossy(&rest[..end]);
            let exit = match status_text.trim_end_matches('\r').parse::<u8>() {
                Ok(status) => Event::Exited(status),
                Err(_) => Event::SetupFailed(format!("unreadable exit status {status_text:?}")),
            };
            let output = held[..at].to_vec();
            self.phase = Phase::Done;
            return output_event(output).into_iter().chain([exit]).collect();
        }
        let keep = held.len().min(marker.len() - 1);
        let output: Vec<u8> = held.drain(..held.len() - keep).collect();
        output_event(output).into_iter().collect()
    }
}

fn output_event(output: Vec<u8>) -> Option<Event> {
    (!output.is_empty()).then_some(Event::Output(output))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: &str = "5eed";

    /// Feeds `console` in chunks of `size` bytes; returns the output and the other events.
    fn run(console: &[u8], size: usize) -> (Vec<u8>, Vec<Event>) {
        let mut parser = ConsoleParser::new(NONCE);
        let mut output = Vec::new();
        let mut others = Vec::new();
        for chunk in console.chunks(size) {
            for event in parser.feed(chunk) {
                match event {
                    Event::Output(bytes) => output.extend(bytes),
                    other => others.push(other),
                }
            }
        }
        (output, others)
    }

    fn every_chunking(console: &[u8]) -> (Vec<u8>, Vec<Event>) {
        let whole = run(console, console.len().max(1));
        for size in 1..console.len() {
            assert_eq!(run(console, size), whole, "chunks of {size}");
        }
        whole
    }

    #[test]
    fn output_is_exactly_what_lies_between_the_markers() {
        let console = b"[    0.1] kernel noise\r\n\nISOLAB-SANDBOX-BEGIN 5eed\nhello\nworld\n\nISOLAB-SANDBOX-EXIT 5eed 7\nreboot: Power down\r\n";
        let (output, events) = every_chunking(console);
        assert_eq!(output, b"hello\nworld\n");
        assert_eq!(events, [Event::Began, Event::Exited(7)]);
    }

    #[test]
    fn output_without_a_final_newline_or_at_all() {
        let (output, events) = every_chunking(
            b"\nISOLAB-SANDBOX-BEGIN 5eed\nno newline\nISOLAB-SANDBOX-EXIT 5eed 0\n",
        );
        assert_eq!(output, b"no newline");
        assert_eq!(events, [Event::Began, Event::Exited(0)]);
        let (output, events) =
            every_chunking(b"ISOLAB-SANDBOX-BEGIN 5eed\n\nISOLAB-SANDBOX-EXIT 5eed 255\n");
        assert_eq!(output, b"");
        assert_eq!(events, [Event::Began, Event::Exited(255)]);
    }

    #[test]
    fn markers_with_another_nonce_are_output() {
        let console = b"ISOLAB-SANDBOX-BEGIN 5eed\nISOLAB-SANDBOX-EXIT 0000 3\n\nISOLAB-SANDBOX-EXIT 5eed 1\n";
        let (output, events) = every_chunking(console);
        assert_eq!(output, b"ISOLAB-SANDBOX-EXIT 0000 3\n");
        assert_eq!(events, [Event::Began, Event::Exited(1)]);
        // Before the begin marker, a foreign nonce is just noise.
        let (_, events) = every_chunking(b"ISOLAB-SANDBOX-BEGIN beef\n");
        assert_eq!(events, []);
    }

    #[test]
    fn a_failed_setup_step_is_reported() {
        let console =
            b"noise\n\nISOLAB-SANDBOX-SETUP-FAILED 5eed insmod /lib/modules/kvm.ko\r\npanic\n";
        let (output, events) = every_chunking(console);
        assert_eq!(output, b"");
        assert_eq!(
            events,
            [Event::SetupFailed("insmod /lib/modules/kvm.ko".to_owned())]
        );
    }

    #[test]
    fn output_streams_before_the_end() {
        let mut parser = ConsoleParser::new(NONCE);
        assert_eq!(parser.feed(b"ISOLAB-SANDBOX-BEGIN 5eed\n"), [Event::Began]);
        let long = vec![b'x'; 100];
        let events = parser.feed(&long);
        let Event::Output(streamed) = &events[0] else {
            panic!("{events:?}")
        };
        // Only a marker's length minus one is held back.
        assert_eq!(streamed.len(), 100 - (EXIT.len() + NONCE.len() + 2));
        assert!(!parser.is_done());
        parser.feed(b"\nISOLAB-SANDBOX-EXIT 5eed 0\n");
        assert!(parser.is_done());
    }
}
