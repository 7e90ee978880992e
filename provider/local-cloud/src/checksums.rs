//! The checksums Cloud Storage reports (CRC32C and MD5), computed incrementally as bytes arrive.

/// MD5 and CRC32C of an object, computed in one pass as the bytes go by.
pub struct Hashes {
    crc: Crc32c,
    md5: md5::Md5,
}

impl Hashes {
    pub fn new() -> Hashes {
        Hashes { crc: Crc32c::new(), md5: md5::Digest::new() }
    }
    pub fn update(&mut self, data: &[u8]) {
        self.crc.update(data);
        md5::Digest::update(&mut self.md5, data);
    }
    /// `(crc32c, md5Hash)`, base64 as the JSON API writes them.
    pub fn finish_b64(self) -> (String, String) {
        use base64::Engine;
        let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Digest::finalize(self.md5));
        (self.crc.finish_b64(), md5)
    }
}

impl Default for Hashes {
    fn default() -> Self {
        Self::new()
    }
}

/// CRC32C (Castagnoli), the checksum Cloud Storage reports, computed incrementally.
pub struct Crc32c(u32);

impl Crc32c {
    pub fn new() -> Crc32c {
        Crc32c(0)
    }
    pub fn update(&mut self, data: &[u8]) {
        self.0 = crc32c::crc32c_append(self.0, data);
    }
    /// Base64 of the big-endian checksum, as the JSON API writes it.
    pub fn finish_b64(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(self.0.to_be_bytes())
    }
}

impl Default for Crc32c {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        let mut c = Crc32c::new();
        c.update(b"123456789");
        use base64::Engine;
        assert_eq!(c.finish_b64(), base64::engine::general_purpose::STANDARD.encode(0xE306_9283u32.to_be_bytes()));
    }
}
