//! `isolab image export`: an image as an OCI image layout tar, its blobs byte for byte as
//! stored, so digests (and the image id) survive a round trip through another tool.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};

use oci_spec::image::{DescriptorBuilder, ImageIndexBuilder, MediaType};

use super::store::Store;
use super::{ImageError, io_err};

impl Store {
    /// Writes image `reference` to `out` as an OCI layout tar (`oci-layout`, `index.json`,
    /// `blobs/sha256/…`); the index names it by its first name, if it has one.
    pub fn export(&self, reference: &str, out: impl Write) -> Result<(), ImageError> {
        let id = self.resolve(reference)?;
        let record = self.record(&id)?;
        let name = self.names()?.remove(&id).and_then(|n| n.into_iter().next());
        let manifest_path = self.blob_path(&record.manifest);
        let manifest_size = fs::metadata(&manifest_path)
            .map_err(io_err("reading", &manifest_path))?
            .len();
        let mut descriptor = DescriptorBuilder::default()
            .media_type(MediaType::ImageManifest)
            .digest(
                format!("sha256:{}", record.manifest)
                    .parse::<oci_spec::image::Digest>()
                    .expect("stored digests are valid"),
            )
            .size(manifest_size);
        if let Some(name) = name {
            descriptor = descriptor.annotations(HashMap::from([(
                "org.opencontainers.image.ref.name".to_string(),
                name,
            )]));
        }
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(vec![descriptor.build().expect("all fields set")])
            .build()
            .expect("all fields set");
        let index = serde_json::to_vec(&index).expect("indexes serialize");

        let failed = |e: io::Error| io_err("writing the export of", self.root().join(&id))(e);
        let mut tar = tar::Builder::new(out);
        append(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(failed)?;
        append(&mut tar, "index.json", &index).map_err(failed)?;
        let mut blobs = vec![record.manifest.clone(), record.id.clone()];
        blobs.extend(record.layers.iter().map(|l| l.digest.clone()));
        blobs.dedup();
        for hex in blobs {
            let path = self.blob_path(&hex);
            let mut file = File::open(&path).map_err(io_err("reading", &path))?;
            let size = file.metadata().map_err(io_err("reading", &path))?.len();
            let mut header = header(size);
            tar.append_data(&mut header, format!("blobs/sha256/{hex}"), &mut file)
                .map_err(failed)?;
        }
        tar.into_inner().and_then(|mut w| w.flush()).map_err(failed)
    }
}

fn header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header
}

fn append(tar: &mut tar::Builder<impl Write>, path: &str, bytes: &[u8]) -> io::Result<()> {
    tar.append_data(&mut header(bytes.len() as u64), path, bytes)
}
