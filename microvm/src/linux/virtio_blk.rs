//! `--disk IMG`: a read-only virtio block device on the virtio-mmio transport (version 2,
//! "modern"), one request queue, served on the vCPU thread that writes `QueueNotify`.
//!
//! The guest learns of it from the DSDT ([`dsdt_device`]: an `LNRO0005` device with its
//! registers and interrupt), as Debian's cloud kernel is built without
//! `CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES` and so ignores `virtio_mmio.device=` on the
//! command line. Its interrupt is an eventfd wired to [`IRQ`] of the in-kernel irqchip
//! (KVM_IRQFD), edge-triggered. The rings are walked with the `virtio-queue` crate; the
//! device offers `VIRTIO_F_VERSION_1` and `VIRTIO_BLK_F_RO`, serves reads and the device
//! id, and fails writes.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_RO, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_GET_ID,
    VIRTIO_BLK_T_IN,
};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
use virtio_bindings::virtio_mmio::*;
use virtio_queue::{Queue, QueueT, Reader, Writer};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

/// Where the registers are: in the 32-bit hole, above the most RAM the monitor gives
/// (3 GiB) and below the I/O APIC.
pub const MMIO_BASE: u64 = 0xd000_0000;
pub const MMIO_SIZE: u64 = 0x1000;
/// The interrupt line (GSI), next to the serial port's.
pub const IRQ: u32 = 5;
const SECTOR: u64 = 512;
const QUEUE_SIZE: u16 = 256;
/// "virt", little-endian.
const MAGIC: u32 = 0x7472_6976;
/// The serial number `VIRTIO_BLK_T_GET_ID` returns (at most 20 bytes).
const SERIAL: &[u8] = b"isolab-disk";
/// Device status bit: the driver gave up on the device.
const STATUS_FAILED: u32 = 0x80;

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("--disk {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("--disk {path}: empty, or not a whole number of 512-byte sectors ({bytes} bytes)")]
    Size { path: PathBuf, bytes: u64 },
}

/// A disk image opened read-only, checked to be whole sectors.
#[derive(Debug)]
pub struct Image {
    file: File,
    sectors: u64,
}

impl Image {
    pub fn open(path: &Path) -> Result<Image, DiskError> {
        let err = |source| DiskError::Open {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(err)?;
        let bytes = file.metadata().map_err(err)?.len();
        if bytes == 0 || bytes % SECTOR != 0 {
            return Err(DiskError::Size {
                path: path.to_owned(),
                bytes,
            });
        }
        Ok(Image {
            file,
            sectors: bytes / SECTOR,
        })
    }
}

/// The device: its image, its queue and the transport's registers.
#[derive(Debug)]
pub struct Block {
    image: File,
    sectors: u64,
    memory: GuestMemoryMmap,
    irq: EventFd,
    queue: Queue,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    status: u32,
    interrupt_status: u32,
    /// Requests served, for the run's report.
    pub requests: u64,
}

impl Block {
    /// The device over `image`; `memory` is the guest's RAM, `irq` the interrupt's eventfd.
    pub fn new(image: Image, memory: GuestMemoryMmap, irq: EventFd) -> Block {
        Block {
            image: image.file,
            sectors: image.sectors,
            memory,
            irq,
            queue: Queue::new(QUEUE_SIZE).expect("a power of two"),
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            status: 0,
            interrupt_status: 0,
            requests: 0,
        }
    }

    fn device_features() -> u64 {
        (1 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_BLK_F_RO)
    }

    /// A guest read at `offset` into the register window.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        if offset >= u64::from(VIRTIO_MMIO_CONFIG) {
            // The configuration space: `capacity` (in sectors) is its only field read here.
            let config = self.sectors.to_le_bytes();
            let at = (offset - u64::from(VIRTIO_MMIO_CONFIG)) as usize;
            for (i, byte) in data.iter_mut().enumerate() {
                *byte = config.get(at + i).copied().unwrap_or(0);
            }
            return;
        }
        let value = match offset as u32 {
            VIRTIO_MMIO_MAGIC_VALUE => MAGIC,
            VIRTIO_MMIO_VERSION => 2,
            VIRTIO_MMIO_DEVICE_ID => VIRTIO_ID_BLOCK,
            VIRTIO_MMIO_VENDOR_ID => 0,
            VIRTIO_MMIO_DEVICE_FEATURES => match self.device_features_sel {
                0 => Self::device_features() as u32,
                1 => (Self::device_features() >> 32) as u32,
                _ => 0,
            },
            VIRTIO_MMIO_QUEUE_NUM_MAX => u32::from(self.queue.max_size()),
            VIRTIO_MMIO_QUEUE_READY => u32::from(self.queue.ready()),
            VIRTIO_MMIO_INTERRUPT_STATUS => self.interrupt_status,
            VIRTIO_MMIO_STATUS => self.status,
            VIRTIO_MMIO_CONFIG_GENERATION => 0,
            _ => 0,
        };
        let bytes = value.to_le_bytes();
        let n = data.len().min(4);
        data[..n].copy_from_slice(&bytes[..n]);
    }

    /// A guest write at `offset` into the register window.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        let mut bytes = [0u8; 4];
        let n = data.len().min(4);
        bytes[..n].copy_from_slice(&data[..n]);
        let value = u32::from_le_bytes(bytes);
        let queue = &mut self.queue;
        match offset as u32 {
            VIRTIO_MMIO_DEVICE_FEATURES_SEL => self.device_features_sel = value,
            VIRTIO_MMIO_DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            VIRTIO_MMIO_DRIVER_FEATURES => match self.driver_features_sel {
                0 => {
                    self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(value)
                }
                1 => {
                    self.driver_features =
                        (self.driver_features & 0xffff_ffff) | (u64::from(value) << 32);
                }
                _ => {}
            },
            // One queue: a selector other than 0 selects nothing there is.
            VIRTIO_MMIO_QUEUE_SEL => {}
            VIRTIO_MMIO_QUEUE_NUM => queue.set_size(value as u16),
            VIRTIO_MMIO_QUEUE_READY => queue.set_ready(value == 1),
            VIRTIO_MMIO_QUEUE_DESC_LOW => queue.set_desc_table_address(Some(value), None),
            VIRTIO_MMIO_QUEUE_DESC_HIGH => queue.set_desc_table_address(None, Some(value)),
            VIRTIO_MMIO_QUEUE_AVAIL_LOW => queue.set_avail_ring_address(Some(value), None),
            VIRTIO_MMIO_QUEUE_AVAIL_HIGH => queue.set_avail_ring_address(None, Some(value)),
            VIRTIO_MMIO_QUEUE_USED_LOW => queue.set_used_ring_address(Some(value), None),
            VIRTIO_MMIO_QUEUE_USED_HIGH => queue.set_used_ring_address(None, Some(value)),
            VIRTIO_MMIO_QUEUE_NOTIFY => self.serve(),
            VIRTIO_MMIO_INTERRUPT_ACK => self.interrupt_status &= !value,
            VIRTIO_MMIO_STATUS if value == 0 => self.reset(),
            VIRTIO_MMIO_STATUS => self.status = value,
            _ => {}
        }
    }

    fn reset(&mut self) {
        self.queue.reset();
        self.status = 0;
        self.interrupt_status = 0;
        self.driver_features = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
    }

    /// Serves every request the driver made available, then interrupts it once.
    fn serve(&mut self) {
        if !self.queue.is_valid(&self.memory) || self.status & STATUS_FAILED != 0 {
            return;
        }
        let mut served = false;
        while let Some(chain) = self.queue.pop_descriptor_chain(&self.memory) {
            let head = chain.head_index();
            let written = request(&self.image, self.sectors, &self.memory, chain);
            // A used ring the driver placed outside RAM leaves the request unanswered;
            // the driver then times it out.
            if self.queue.add_used(&self.memory, head, written).is_ok() {
                served = true;
                self.requests += 1;
            }
        }
        if served && self.queue.needs_notification(&self.memory).unwrap_or(true) {
            self.interrupt_status |= VIRTIO_MMIO_INT_VRING;
            // A full eventfd already holds an interrupt the guest has yet to take.
            let _ = self.irq.write(1);
        }
    }
}

/// Serves one request; returns the bytes written into the guest's buffers. A malformed
/// chain (no header, no status byte) is answered with nothing.
fn request<M>(
    image: &File,
    sectors: u64,
    memory: &GuestMemoryMmap,
    chain: virtio_queue::DescriptorChain<M>,
) -> u32
where
    M: std::ops::Deref<Target = GuestMemoryMmap> + Clone,
{
    let (Ok(mut reader), Ok(mut writer)) = (
        Reader::<()>::new(memory, chain.clone()),
        Writer::<()>::new(memory, chain),
    ) else {
        return 0;
    };
    let (Ok(kind), Ok(_), Ok(sector)) = (
        reader.read_obj::<u32>(),
        reader.read_obj::<u32>(),
        reader.read_obj::<u64>(),
    ) else {
        return 0;
    };
    let Some(data_len) = writer.available_bytes().checked_sub(1) else {
        return 0;
    };
    let Ok(mut status_writer) = writer.split_at(data_len) else {
        return 0;
    };
    let status = match kind {
        VIRTIO_BLK_T_IN => read_sectors(image, sectors, sector, data_len, &mut writer),
        VIRTIO_BLK_T_GET_ID => {
            let id = &SERIAL[..SERIAL.len().min(data_len)];
            match writer.write_all(id) {
                Ok(()) => VIRTIO_BLK_S_OK,
                Err(_) => VIRTIO_BLK_S_IOERR,
            }
        }
        // Writes (and flushes of them) to a read-only device, and anything else.
        _ => VIRTIO_BLK_S_UNSUPP,
    };
    let _ = status_writer.write_obj(status as u8);
    (writer.bytes_written() + status_writer.bytes_written()) as u32
}

/// Reads `len` bytes from `sector` on into the guest's buffers.
fn read_sectors(
    image: &File,
    sectors: u64,
    sector: u64,
    len: usize,
    writer: &mut Writer<'_, ()>,
) -> u32 {
    let end = sector
        .checked_mul(SECTOR)
        .and_then(|at| at.checked_add(len as u64));
    if end.is_none_or(|end| end > sectors * SECTOR) {
        return VIRTIO_BLK_S_IOERR;
    }
    let mut buf = vec![0u8; len];
    if image.read_exact_at(&mut buf, sector * SECTOR).is_err() {
        return VIRTIO_BLK_S_IOERR;
    }
    match writer.write_all(&buf) {
        Ok(()) => VIRTIO_BLK_S_OK,
        Err(_) => VIRTIO_BLK_S_IOERR,
    }
}

/// The device's DSDT entry: `Scope (\_SB) { Device (VR00) { Name (_HID, "LNRO0005") Name (_UID, 0)
/// Name (_CRS, ResourceTemplate () { Memory32Fixed (ReadWrite, MMIO_BASE, MMIO_SIZE)
/// Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { IRQ } }) } }`.
pub fn dsdt_device() -> Vec<u8> {
    use acpi_tables::Aml;
    use acpi_tables::aml::{Device, Interrupt, Memory32Fixed, Name, Path, ResourceTemplate, Scope};
    let memory = Memory32Fixed::new(true, MMIO_BASE as u32, MMIO_SIZE as u32);
    let interrupt = Interrupt::new(true, true, false, false, IRQ);
    let crs = ResourceTemplate::new(vec![&memory, &interrupt]);
    let (hid_path, uid_path, crs_path) = (Path::new("_HID"), Path::new("_UID"), Path::new("_CRS"));
    let hid = Name::new(hid_path, &"LNRO0005");
    let uid = Name::new(uid_path, &acpi_tables::aml::ZERO);
    let crs = Name::new(crs_path, &crs);
    let device = Device::new(Path::new("VR00"), vec![&hid, &uid, &crs]);
    let scope = Scope::new(Path::new("\\_SB_"), vec![&device]);
    let mut bytes = Vec::new();
    scope.to_aml_bytes(&mut bytes);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{Address, Bytes, GuestAddress};

    const RAM: u64 = 1 << 20;
    const DESC: u64 = 0x1000;
    const AVAIL: u64 = 0x2000;
    const USED: u64 = 0x3000;

    fn device(image: &[u8]) -> (Block, tempfile::NamedTempFile) {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(image).unwrap();
        let memory =
            GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap();
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        (
            Block::new(Image::open(file.path()).unwrap(), memory, irq),
            file,
        )
    }

    fn read32(block: &Block, offset: u32) -> u32 {
        let mut data = [0u8; 4];
        block.read(u64::from(offset), &mut data);
        u32::from_le_bytes(data)
    }

    fn write32(block: &mut Block, offset: u32, value: u32) {
        block.write(u64::from(offset), &value.to_le_bytes());
    }

    /// Sets the queue up as Linux's driver does, at DESC, AVAIL and USED.
    fn set_up_queue(block: &mut Block) {
        write32(block, VIRTIO_MMIO_QUEUE_SEL, 0);
        write32(block, VIRTIO_MMIO_QUEUE_NUM, 16);
        write32(block, VIRTIO_MMIO_QUEUE_DESC_LOW, DESC as u32);
        write32(block, VIRTIO_MMIO_QUEUE_AVAIL_LOW, AVAIL as u32);
        write32(block, VIRTIO_MMIO_QUEUE_USED_LOW, USED as u32);
        write32(block, VIRTIO_MMIO_QUEUE_READY, 1);
    }

    /// Puts a three-descriptor request (header, data, status) on the ring and notifies.
    fn submit(block: &mut Block, kind: u32, sector: u64, len: u32) {
        let mem = block.memory.clone();
        let (header, data, status) = (0x4000u64, 0x5000u64, 0x6000u64);
        let mut h = kind.to_le_bytes().to_vec();
        h.extend(0u32.to_le_bytes());
        h.extend(sector.to_le_bytes());
        mem.write_slice(&h, GuestAddress(header)).unwrap();
        // Descriptors: addr u64, len u32, flags u16 (1 NEXT, 2 WRITE), next u16.
        let descs = [(header, 16, 1, 1), (data, len, 3, 2), (status, 1, 2, 0)];
        for (i, (addr, len, flags, next)) in descs.into_iter().enumerate() {
            let at = GuestAddress(DESC + 16 * i as u64);
            mem.write_obj(addr, at).unwrap();
            mem.write_obj(len, at.unchecked_add(8)).unwrap();
            mem.write_obj(flags as u16, at.unchecked_add(12)).unwrap();
            mem.write_obj(next as u16, at.unchecked_add(14)).unwrap();
        }
        let idx: u16 = mem.read_obj(GuestAddress(AVAIL + 2)).unwrap();
        mem.write_obj(0u16, GuestAddress(AVAIL + 4 + 2 * u64::from(idx % 16)))
            .unwrap();
        mem.write_obj(idx.wrapping_add(1), GuestAddress(AVAIL + 2))
            .unwrap();
        write32(block, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    }

    #[test]
    fn the_registers_say_a_modern_read_only_block_device_of_the_images_size() {
        let (mut block, _file) = device(&[0u8; 4096]);
        assert_eq!(read32(&block, VIRTIO_MMIO_MAGIC_VALUE), MAGIC);
        assert_eq!(read32(&block, VIRTIO_MMIO_VERSION), 2);
        assert_eq!(read32(&block, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_BLOCK);
        assert_eq!(
            read32(&block, VIRTIO_MMIO_DEVICE_FEATURES),
            1 << VIRTIO_BLK_F_RO
        );
        write32(&mut block, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
        assert_eq!(
            read32(&block, VIRTIO_MMIO_DEVICE_FEATURES),
            1 << (VIRTIO_F_VERSION_1 - 32)
        );
        assert_eq!(read32(&block, VIRTIO_MMIO_CONFIG), 8, "capacity: 8 sectors");
        assert_eq!(read32(&block, VIRTIO_MMIO_CONFIG + 4), 0);
        write32(&mut block, VIRTIO_MMIO_STATUS, 0xf);
        assert_eq!(read32(&block, VIRTIO_MMIO_STATUS), 0xf);
        write32(&mut block, VIRTIO_MMIO_STATUS, 0);
        assert_eq!(read32(&block, VIRTIO_MMIO_STATUS), 0, "a reset");
    }

    #[test]
    fn reads_come_from_the_image_and_interrupt_the_guest() {
        let mut image = vec![0u8; 2048];
        image[1024..1024 + 6].copy_from_slice(b"marker");
        let (mut block, _file) = device(&image);
        set_up_queue(&mut block);
        submit(&mut block, VIRTIO_BLK_T_IN, 2, 512);
        let mem = block.memory.clone();
        let mut data = [0u8; 6];
        mem.read_slice(&mut data, GuestAddress(0x5000)).unwrap();
        assert_eq!(&data, b"marker");
        let status: u8 = mem.read_obj(GuestAddress(0x6000)).unwrap();
        assert_eq!(u32::from(status), VIRTIO_BLK_S_OK);
        let used_idx: u16 = mem.read_obj(GuestAddress(USED + 2)).unwrap();
        let used_len: u32 = mem.read_obj(GuestAddress(USED + 8)).unwrap();
        assert_eq!((used_idx, used_len), (1, 513));
        assert_eq!(read32(&block, VIRTIO_MMIO_INTERRUPT_STATUS), 1);
        assert_eq!(block.irq.read().unwrap(), 1);
        write32(&mut block, VIRTIO_MMIO_INTERRUPT_ACK, 1);
        assert_eq!(read32(&block, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
        assert_eq!(block.requests, 1);
    }

    #[test]
    fn reads_past_the_end_and_writes_fail() {
        let (mut block, _file) = device(&[7u8; 1024]);
        set_up_queue(&mut block);
        submit(&mut block, VIRTIO_BLK_T_IN, 1, 1024);
        let mem = block.memory.clone();
        let status: u8 = mem.read_obj(GuestAddress(0x6000)).unwrap();
        assert_eq!(u32::from(status), VIRTIO_BLK_S_IOERR);
        submit(
            &mut block,
            virtio_bindings::virtio_blk::VIRTIO_BLK_T_OUT,
            0,
            512,
        );
        let status: u8 = mem.read_obj(GuestAddress(0x6000)).unwrap();
        assert_eq!(u32::from(status), VIRTIO_BLK_S_UNSUPP);
        let mut image = [0u8; 8];
        _file.as_file().read_exact_at(&mut image, 0).unwrap();
        assert_eq!(image, [7u8; 8], "the image is untouched");
    }

    #[test]
    fn images_must_be_whole_sectors() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), [0u8; 100]).unwrap();
        let err = Image::open(file.path()).unwrap_err();
        assert!(err.to_string().contains("512-byte sectors"), "{err}");
    }

    #[test]
    fn the_dsdt_entry_names_the_virtio_mmio_device_and_its_resources() {
        let aml = dsdt_device();
        let text = String::from_utf8_lossy(&aml);
        assert!(
            text.contains("VR00") && text.contains("LNRO0005"),
            "{aml:x?}"
        );
        assert!(
            aml.windows(4)
                .any(|w| w == (MMIO_BASE as u32).to_le_bytes()),
            "the base address"
        );
        // Extended interrupt descriptor: consumer, edge, active high, one interrupt: IRQ.
        let irq = [0x89, 6, 0, 0x03, 1, IRQ as u8, 0, 0, 0];
        assert!(aml.windows(irq.len()).any(|w| w == irq), "{aml:x?}");
    }
}
