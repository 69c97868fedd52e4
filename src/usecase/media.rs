//! Uploaded files of a tenant: checked (size, and for images the format and dimensions read from their
//! headers), written durably to the blob store, then recorded by the tenant (`MediaStored`). The same
//! bytes of the same kind are stored and recorded once.

use rookery_actors::{CoreError, Origin};
use rookery_events::{MediaRecord, TenantCommand, Timestamp};

use super::{Error, Field, UseCases};
use crate::blobs::Blobs;

/// Largest upload, in bytes.
pub const MAX_MEDIA_BYTES: usize = 8 << 20;

/// The kinds of upload.
pub const MEDIA_KINDS: &[&str] = &["image", "file", "voice"];

/// Longest file name kept, in bytes.
const MAX_NAME: usize = 250;

fn storage(e: impl std::fmt::Display) -> Error {
    Error::Core(CoreError::Storage(e.to_string()))
}

/// What an image's header says: its format and dimensions, for the formats an image upload may have.
fn image_facts(bytes: &[u8]) -> Option<(&'static str, u32, u32)> {
    let format = match imagesize::image_type(bytes).ok()? {
        imagesize::ImageType::Jpeg => "jpg",
        imagesize::ImageType::Png => "png",
        imagesize::ImageType::Gif => "gif",
        imagesize::ImageType::Bmp => "bmp",
        _ => return None,
    };
    let size = imagesize::blob_size(bytes).ok()?;
    Some((format, u32::try_from(size.width).ok()?, u32::try_from(size.height).ok()?))
}

impl UseCases {
    fn blobs(&self) -> Blobs {
        Blobs::under(&self.config.data_dir)
    }

    /// Stores an upload of `kind` (`image`, `file`, `voice`) named `name` for tenant `tag`.
    ///
    /// # Errors
    /// [`Error::Invalid`] / [`Error::TooLarge`] for an unknown kind, an empty or too large file, or an
    /// image that is not a jpg, png, gif or bmp; [`Error::Core`] when the disk or the log fails.
    pub async fn store_media(&self, tag: &str, kind: &str, name: &str, bytes: Vec<u8>, origin: Origin) -> Result<MediaRecord, Error> {
        if !MEDIA_KINDS.contains(&kind) {
            return Err(Error::invalid(Field::Payload, format!("type must be image, file or voice, got {kind:?}")));
        }
        if bytes.is_empty() {
            return Err(Error::invalid(Field::Payload, "the file is empty"));
        }
        if bytes.len() > MAX_MEDIA_BYTES {
            return Err(Error::TooLarge(Field::Payload, format!("a file is at most {MAX_MEDIA_BYTES} bytes")));
        }
        let name: String = name.chars().filter(|c| !c.is_control()).collect();
        if name.len() > MAX_NAME {
            return Err(Error::invalid(Field::Payload, format!("the file name is longer than {MAX_NAME} bytes")));
        }
        let (format, width, height) = if kind == "image" {
            let (f, w, h) = image_facts(&bytes).ok_or_else(|| Error::invalid(Field::Payload, "an image must be a jpg, png, gif or bmp"))?;
            (f.to_owned(), w, h)
        } else {
            let ext = name
                .rsplit_once('.')
                .map(|(_, e)| e.to_ascii_lowercase())
                .filter(|e| !e.is_empty() && e.len() <= 16 && e.bytes().all(|b| b.is_ascii_alphanumeric()));
            (ext.unwrap_or_default(), 0, 0)
        };
        let crc32 = crc32fast::hash(&bytes);
        let size = bytes.len() as u64;
        let blobs = self.blobs();
        // Durable before the event that refers to it.
        let sha256 = tokio::task::spawn_blocking(move || blobs.put(&bytes)).await.map_err(storage)?.map_err(storage)?;
        let record = MediaRecord { kind: kind.to_owned(), sha256, size, crc32, format, width, height, name, at: Timestamp(0) };
        self.core.tenant(tag, TenantCommand::StoreMedia(record.clone()), origin).await?;
        let key = (record.kind.clone(), record.sha256.clone());
        let stored = self.core.tenant_read(tag, move |s| s.media.get(&key).cloned()).await?;
        stored.ok_or_else(|| storage("an upload was recorded but is not found"))
    }

    /// The record of tenant `tag`'s upload of `kind` with bytes `sha256`, if there is one.
    ///
    /// # Errors
    /// [`Error::Core`] when the tenant cannot be read.
    pub async fn media(&self, tag: &str, kind: &str, sha256: &str) -> Result<Option<MediaRecord>, Error> {
        let key = (kind.to_owned(), sha256.to_owned());
        Ok(self.core.tenant_read(tag, move |s| s.media.get(&key).cloned()).await?)
    }

    /// The bytes of blob `sha256`, and the image format they are when they are one.
    ///
    /// # Errors
    /// [`Error::Core`] when the disk fails.
    pub async fn blob(&self, sha256: &str) -> Result<Option<(Vec<u8>, Option<&'static str>)>, Error> {
        let (blobs, sha) = (self.blobs(), sha256.to_owned());
        let bytes = tokio::task::spawn_blocking(move || blobs.get(&sha)).await.map_err(storage)?.map_err(storage)?;
        Ok(bytes.map(|b| {
            let format = image_facts(&b).map(|(f, _, _)| f);
            (b, format)
        }))
    }
}
