//! The guest's legacy devices, emulated in the monitor: a 16550 UART at 0x3f8 (vm-superio;
//! its interrupt is an eventfd wired to GSI 4 of the in-kernel irqchip) and an i8042
//! keyboard controller with nothing attached ([`I8042`]): enough for Linux's probe to
//! finish at once and for its reset (`reboot=k`: 0xfe to port 0x64) to end the VM.
//! Everything else on the port bus reads as a floating bus (0xff).
//!
//! The console is also the boot marker: the UART receives every byte the guest prints,
//! so the monitor time-stamps the guest's first console line and the `ISOLAB-READY` line
//! at the very port write that completes them — no extra device or guest change needed.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use vm_superio::{Serial, Trigger, serial::NoEvents};

use super::virtio_blk::{self, Block};
use vmm_sys_util::eventfd::EventFd;

pub const SERIAL_BASE: u16 = 0x3f8;
pub const SERIAL_IRQ: u32 = 4;
const I8042_DATA: u16 = 0x60;
const I8042_COMMAND: u16 = 0x64;
/// The line the workload prints once it runs.
pub const READY: &str = "ISOLAB-READY";
/// How the workload's figures line (its JSON) starts.
const FIGURES_PREFIX: &str = "{\"mode\":";

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
    /// Keep the workload's figures line out of the echo (see [`Console::hold_figures`]).
    hold: bool,
    line: Vec<u8>,
    /// Every complete line, `\r` removed.
    pub lines: Vec<String>,
    pub first_line: Option<Duration>,
    pub ready: Option<Duration>,
    /// The first `Kernel panic` line.
    pub panic: Option<String>,
    /// The last workload figures line (`{"mode":…`), when held back.
    pub figures: Option<String>,
}

impl Console {
    pub fn new(started: Instant, echo: bool) -> Self {
        Console {
            started,
            echo,
            hold: false,
            line: Vec::new(),
            lines: Vec::new(),
            first_line: None,
            ready: None,
            panic: None,
            figures: None,
        }
    }

    /// Holds the workload's figures line back from the echo, so that the caller can print
    /// it last, with the monitor's own figures added: a launcher that reads the last
    /// stdout line as the figures (the bench harness) then gets both, whatever the kernel
    /// prints after the workload (its panic on init's exit).
    pub fn hold_figures(mut self) -> Self {
        self.hold = true;
        self
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
                let held = self.hold && line.starts_with(FIGURES_PREFIX);
                if held {
                    self.figures = Some(line.clone());
                }
                if self.echo && !held {
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

/// How often the guest read and wrote each port: every access is a VM exit, so this is
/// where a boot's exits go.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PortCount {
    pub reads: u64,
    pub writes: u64,
}

/// The port bus, and the MMIO window of the optional disk.
#[derive(Debug)]
pub struct Devices {
    pub serial: Serial<IrqTrigger, NoEvents, Console>,
    pub i8042: I8042,
    pub ports: BTreeMap<u16, PortCount>,
    /// `--disk`: the virtio block device at [`virtio_blk::MMIO_BASE`].
    pub block: Option<Block>,
}

impl Devices {
    pub fn new(irq: EventFd, console: Console) -> Self {
        Devices {
            serial: Serial::new(IrqTrigger(irq), console),
            i8042: I8042::default(),
            ports: BTreeMap::new(),
            block: None,
        }
    }

    /// The disk's register offset for a guest access at `addr`, if it is the disk's.
    fn block_at(&mut self, addr: u64) -> Option<(&mut Block, u64)> {
        let offset = addr.checked_sub(virtio_blk::MMIO_BASE)?;
        let block = self.block.as_mut()?;
        (offset < virtio_blk::MMIO_SIZE).then_some((block, offset))
    }

    /// A guest MMIO access: writes go to the disk's registers, reads fill `data`; outside
    /// them reads are zeros, as on a bus with nothing there.
    pub fn mmio(&mut self, addr: u64, write: bool, data: &mut [u8]) {
        match (self.block_at(addr), write) {
            (Some((block, offset)), true) => block.write(offset, data),
            (Some((block, offset)), false) => block.read(offset, data),
            (None, true) => {}
            (None, false) => data.fill(0),
        }
    }

    pub fn console(&self) -> &Console {
        self.serial.writer()
    }

    /// The guest asked for a reset through the i8042.
    pub fn reset(&self) -> bool {
        self.i8042.reset
    }

    /// A guest `out`.
    pub fn port_write(&mut self, port: u16, data: &[u8]) {
        self.ports.entry(port).or_default().writes += 1;
        let Some(&value) = data.first() else { return };
        match port {
            SERIAL_BASE..=0x3ff => {
                // A failed interrupt (eventfd full) only delays the guest's console.
                let _ = self.serial.write((port - SERIAL_BASE) as u8, value);
            }
            I8042_COMMAND => self.i8042.command(value),
            I8042_DATA => self.i8042.data(value),
            _ => {}
        }
    }

    /// A guest `in`: fills `data`.
    pub fn port_read(&mut self, port: u16, data: &mut [u8]) {
        self.ports.entry(port).or_default().reads += 1;
        let value = match port {
            SERIAL_BASE..=0x3ff => self.serial.read((port - SERIAL_BASE) as u8),
            I8042_COMMAND => self.i8042.status(),
            I8042_DATA => self.i8042.read_data(),
            _ => 0xff,
        };
        data.fill(value);
    }
}

/// An i8042 keyboard controller with no keyboard or mouse attached.
///
/// Linux reads the command byte (CTR) at boot, polling the status register up to 10,000
/// times (half a second, one exit each) for the reply; a controller that never answers
/// costs that wait and the "Can't read CTR" line. This one answers every command Linux's
/// probe, self-test and reset use at the moment it is written, so the input buffer is
/// always empty and replies are there on the first poll. It raises no interrupts: with
/// nothing attached the output buffer only ever holds command replies, which Linux polls
/// for (keyboard interrupts on, it reads them before they could matter).
#[derive(Debug)]
pub struct I8042 {
    /// The command byte (CTR), as a BIOS leaves it.
    ctr: u8,
    /// The reply waiting for a read of the data port.
    output: Option<u8>,
    /// A command that takes its parameter from the next data-port write.
    pending: Option<u8>,
    /// Status bit 3: the last write went to the command port.
    last_was_command: bool,
    /// The guest pulsed the CPU reset line.
    pub reset: bool,
}

/// Status register bits.
const STR_OBF: u8 = 0x01;
const STR_SYS: u8 = 0x04;
const STR_CMDDAT: u8 = 0x08;
/// The keyboard is not inhibited (the key lock is open).
const STR_KEYLOCK: u8 = 0x10;
/// CTR bits.
const CTR_KBDINT: u8 = 0x01;
const CTR_SYS: u8 = 0x04;
const CTR_KBDDIS: u8 = 0x10;
const CTR_AUXDIS: u8 = 0x20;
const CTR_XLATE: u8 = 0x40;
/// Commands.
const CMD_READ_CTR: u8 = 0x20;
const CMD_WRITE_CTR: u8 = 0x60;
const CMD_AUX_DISABLE: u8 = 0xa7;
const CMD_AUX_ENABLE: u8 = 0xa8;
const CMD_SELF_TEST: u8 = 0xaa;
const CMD_KBD_TEST: u8 = 0xab;
const CMD_KBD_DISABLE: u8 = 0xad;
const CMD_KBD_ENABLE: u8 = 0xae;
const CMD_WRITE_OUTPUT_PORT: u8 = 0xd1;
/// Pulse the CPU reset line (output port bit 0).
const CMD_RESET: u8 = 0xfe;
const SELF_TEST_PASSED: u8 = 0x55;
const INTERFACE_TEST_PASSED: u8 = 0x00;
/// Output port bit 0: low holds the CPU in reset.
const OUTPUT_PORT_NOT_RESET: u8 = 0x01;

impl Default for I8042 {
    fn default() -> Self {
        I8042 {
            ctr: CTR_KBDINT | CTR_SYS | CTR_AUXDIS | CTR_XLATE,
            output: None,
            pending: None,
            last_was_command: false,
            reset: false,
        }
    }
}

impl I8042 {
    /// Port 0x64, read. The input buffer is never full: every write is handled at once.
    fn status(&self) -> u8 {
        let obf = if self.output.is_some() { STR_OBF } else { 0 };
        let cmd = if self.last_was_command { STR_CMDDAT } else { 0 };
        obf | STR_SYS | cmd | STR_KEYLOCK
    }

    /// Port 0x60, read: the waiting reply, or 0 when there is none.
    fn read_data(&mut self) -> u8 {
        self.output.take().unwrap_or(0)
    }

    /// Port 0x64, write.
    fn command(&mut self, command: u8) {
        self.last_was_command = true;
        self.pending = None;
        match command {
            CMD_READ_CTR => self.output = Some(self.ctr),
            CMD_WRITE_CTR | CMD_WRITE_OUTPUT_PORT => self.pending = Some(command),
            CMD_AUX_DISABLE => self.ctr |= CTR_AUXDIS,
            CMD_AUX_ENABLE => self.ctr &= !CTR_AUXDIS,
            CMD_KBD_DISABLE => self.ctr |= CTR_KBDDIS,
            CMD_KBD_ENABLE => self.ctr &= !CTR_KBDDIS,
            CMD_SELF_TEST => self.output = Some(SELF_TEST_PASSED),
            CMD_KBD_TEST => self.output = Some(INTERFACE_TEST_PASSED),
            CMD_RESET => self.reset = true,
            // The rest (aux tests and loopback, password, mux) concern devices that are
            // not there: they get no reply, as from a controller without them.
            _ => {}
        }
    }

    /// Port 0x60, write: a command's parameter, else a byte for the (absent) keyboard,
    /// which no one receives.
    fn data(&mut self, value: u8) {
        self.last_was_command = false;
        match self.pending.take() {
            Some(CMD_WRITE_CTR) => self.ctr = value,
            Some(CMD_WRITE_OUTPUT_PORT) if value & OUTPUT_PORT_NOT_RESET == 0 => self.reset = true,
            _ => {}
        }
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
    fn held_figures_are_kept_apart() {
        let mut console = Console::new(Instant::now(), false).hold_figures();
        console
            .write_all(b"ISOLAB-READY\r\n{\"mode\":\"ready\"}\r\nKernel panic\r\n")
            .unwrap();
        assert_eq!(console.figures.as_deref(), Some(r#"{"mode":"ready"}"#));
        assert_eq!(console.lines.len(), 3, "every line is still kept");
        let mut plain = Console::new(Instant::now(), false);
        plain.write_all(b"{\"mode\":\"ready\"}\n").unwrap();
        assert_eq!(plain.figures, None);
    }

    #[test]
    fn the_i8042_reset_command_requests_a_reset() {
        let mut dev = devices();
        let mut status = [0xaa];
        dev.port_read(I8042_COMMAND, &mut status);
        assert_eq!(status[0] & 0x03, 0, "both buffers empty: {status:?}");
        dev.port_write(I8042_COMMAND, &[CMD_WRITE_OUTPUT_PORT]);
        assert!(!dev.reset());
        dev.port_write(I8042_COMMAND, &[CMD_RESET]);
        assert!(dev.reset());
        let mut floating = [0; 2];
        dev.port_read(0x2f8, &mut floating);
        assert_eq!(floating, [0xff, 0xff]);
        assert_eq!(
            dev.ports[&I8042_COMMAND],
            PortCount {
                reads: 1,
                writes: 2
            }
        );
    }

    #[test]
    fn writing_the_output_port_with_bit_0_clear_resets() {
        let mut dev = devices();
        dev.port_write(I8042_COMMAND, &[CMD_WRITE_OUTPUT_PORT]);
        dev.port_write(I8042_DATA, &[0xdf]);
        assert!(!dev.reset());
        dev.port_write(I8042_COMMAND, &[CMD_WRITE_OUTPUT_PORT]);
        dev.port_write(I8042_DATA, &[0xde]);
        assert!(dev.reset());
    }

    /// Linux's probe: read the CTR twice, write it back changed, read it again; the
    /// reply is there on the first status poll each time.
    #[test]
    fn the_i8042_answers_linux_probe_at_once() {
        let mut dev = devices();
        let mut byte = [0];
        let mut command = |dev: &mut Devices, cmd: u8| -> Option<u8> {
            dev.port_write(I8042_COMMAND, &[cmd]);
            dev.port_read(I8042_COMMAND, &mut byte);
            (byte[0] & STR_OBF != 0).then(|| {
                dev.port_read(I8042_DATA, &mut byte);
                byte[0]
            })
        };
        let ctr = command(&mut dev, CMD_READ_CTR).expect("a CTR");
        assert_eq!(command(&mut dev, CMD_READ_CTR), Some(ctr));
        assert_eq!(ctr & (CTR_SYS | CTR_AUXDIS), CTR_SYS | CTR_AUXDIS);
        dev.port_write(I8042_COMMAND, &[CMD_WRITE_CTR]);
        dev.port_write(I8042_DATA, &[ctr & !CTR_KBDINT]);
        assert_eq!(command(&mut dev, CMD_READ_CTR), Some(ctr & !CTR_KBDINT));
        assert_eq!(command(&mut dev, CMD_SELF_TEST), Some(SELF_TEST_PASSED));
        assert_eq!(command(&mut dev, CMD_KBD_TEST), Some(INTERFACE_TEST_PASSED));
        assert_eq!(command(&mut dev, CMD_KBD_DISABLE), None);
        assert_eq!(
            command(&mut dev, CMD_READ_CTR).map(|c| c & CTR_KBDDIS),
            Some(CTR_KBDDIS)
        );
        // Nothing attached: the mux/aux probes get no reply, and nothing stays pending.
        assert_eq!(command(&mut dev, 0xa9), None);
        dev.port_read(I8042_COMMAND, &mut byte);
        assert_eq!(byte[0] & STR_OBF, 0);
        assert!(!dev.reset());
    }

    #[test]
    fn the_uart_reports_its_transmitter_empty() {
        let mut dev = devices();
        let mut lsr = [0];
        dev.port_read(SERIAL_BASE + 5, &mut lsr);
        assert_eq!(lsr[0] & 0x60, 0x60);
    }
}
