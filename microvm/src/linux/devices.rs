//! The guest's legacy devices, emulated in the monitor: a 16550 UART at 0x3f8 (vm-superio;
//! its interrupt is an eventfd wired to GSI 4 of the in-kernel irqchip) and the part of an
//! i8042 that a reboot uses, so that the guest's reset (`reboot=k`: 0xfe to port 0x64)
//! ends the VM cleanly. Everything else on the port bus reads as a floating bus (0xff).
//!
//! The console is also the boot marker: the UART receives every byte the guest prints,
//! so the monitor time-stamps the guest's first console line and the `ISOLAB-READY` line
//! at the very port write that completes them — no extra device or guest change needed.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use vm_superio::{Serial, Trigger, serial::NoEvents};
use vmm_sys_util::eventfd::EventFd;

pub const SERIAL_BASE: u16 = 0x3f8;
pub const SERIAL_IRQ: u32 = 4;
const I8042_DATA: u16 = 0x60;
const I8042_COMMAND: u16 = 0x64;
/// The i8042 command that pulses the CPU reset line.
const I8042_RESET: u8 = 0xfe;
/// The line the workload prints once it runs.
pub const READY: &str = "ISOLAB-READY";

/// Raises the UART's interrupt line through its irqfd.
#[derive(Debug)]
pub struct IrqTrigger(pub EventFd);

impl Trigger for IrqTrigger {
    type E = io::Error;

    fn trigger(&self) -> io::Result<()> {
        self.0.write(1)
    }
}

/// What the console has shown so far, with the moments that matter.
#[derive(Debug)]
pub struct Console {
    started: Instant,
    /// Echo the guest's console to our stdout as it arrives.
    echo: bool,
    line: Vec<u8>,
    /// Every complete line, `\r` removed.
    pub lines: Vec<String>,
    pub first_line: Option<Duration>,
    pub ready: Option<Duration>,
    /// The first `Kernel panic` line.
    pub panic: Option<String>,
}

impl Console {
    pub fn new(started: Instant, echo: bool) -> Self {
        Console {
            started,
            echo,
            line: Vec::new(),
            lines: Vec::new(),
            first_line: None,
            ready: None,
            panic: None,
        }
    }

    fn byte(&mut self, byte: u8) {
        match byte {
            b'\r' => {}
            b'\n' => {
                let line = String::from_utf8_lossy(&self.line).into_owned();
                self.line.clear();
                let at = self.started.elapsed();
                self.first_line.get_or_insert(at);
                if self.ready.is_none() && line.trim_end() == READY {
                    self.ready = Some(at);
                }
                if self.panic.is_none() && line.contains("Kernel panic - not syncing") {
                    self.panic = Some(line.trim().to_owned());
                }
                if self.echo {
                    // A closed stdout must not stop the guest.
                    let mut out = io::stdout().lock();
                    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
                }
                self.lines.push(line);
            }
            _ => self.line.push(byte),
        }
    }

    /// The last `n` lines, for error messages.
    pub fn tail(&self, n: usize) -> String {
        let start = self.lines.len().saturating_sub(n);
        self.lines[start..].join("\n")
    }
}

impl Write for Console {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        buf.iter().for_each(|b| self.byte(*b));
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The port bus.
#[derive(Debug)]
pub struct Devices {
    pub serial: Serial<IrqTrigger, NoEvents, Console>,
    /// The guest asked for a reset through the i8042.
    pub reset: bool,
}

impl Devices {
    pub fn new(irq: EventFd, console: Console) -> Self {
        Devices {
            serial: Serial::new(IrqTrigger(irq), console),
            reset: false,
        }
    }

    pub fn console(&self) -> &Console {
        self.serial.writer()
    }

    /// A guest `out`.
    pub fn port_write(&mut self, port: u16, data: &[u8]) {
        let Some(&value) = data.first() else { return };
        match port {
            SERIAL_BASE..=0x3ff => {
                // A failed interrupt (eventfd full) only delays the guest's console.
                let _ = self.serial.write((port - SERIAL_BASE) as u8, value);
            }
            I8042_COMMAND if value == I8042_RESET => self.reset = true,
            _ => {}
        }
    }

    /// A guest `in`: fills `data`.
    pub fn port_read(&mut self, port: u16, data: &mut [u8]) {
        let value = match port {
            SERIAL_BASE..=0x3ff => self.serial.read((port - SERIAL_BASE) as u8),
            // Status: both buffers empty, so the kernel's reset path writes at once;
            // data: nothing pending.
            I8042_COMMAND | I8042_DATA => 0,
            _ => 0xff,
        };
        data.fill(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devices() -> Devices {
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        Devices::new(irq, Console::new(Instant::now(), false))
    }

    #[test]
    fn console_lines_mark_first_line_ready_and_panic() {
        let mut dev = devices();
        for b in b"Linux version 6.1\r\nISOLAB-READY\r\n{\"mode\":\"ready\"}\r\nKernel panic - not syncing: Attempted to kill init! exitcode=0x00000000\r\n" {
            dev.port_write(SERIAL_BASE, &[*b]);
        }
        let console = dev.console();
        assert_eq!(console.lines.len(), 4);
        assert!(console.first_line.unwrap() <= console.ready.unwrap());
        assert!(
            console
                .panic
                .as_deref()
                .unwrap()
                .ends_with("exitcode=0x00000000")
        );
        assert_eq!(console.tail(1), console.lines[3]);
    }

    #[test]
    fn the_i8042_reset_command_requests_a_reset() {
        let mut dev = devices();
        let mut status = [0xaa];
        dev.port_read(I8042_COMMAND, &mut status);
        assert_eq!(status, [0]);
        dev.port_write(I8042_COMMAND, &[0xd1]);
        assert!(!dev.reset);
        dev.port_write(I8042_COMMAND, &[I8042_RESET]);
        assert!(dev.reset);
        let mut floating = [0; 2];
        dev.port_read(0x2f8, &mut floating);
        assert_eq!(floating, [0xff, 0xff]);
    }

    #[test]
    fn the_uart_reports_its_transmitter_empty() {
        let mut dev = devices();
        let mut lsr = [0];
        dev.port_read(SERIAL_BASE + 5, &mut lsr);
        assert_eq!(lsr[0] & 0x60, 0x60);
    }
}
