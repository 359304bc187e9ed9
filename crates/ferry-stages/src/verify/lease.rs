//! A verify chunk (`verifychunk#<chunk id>`) is worked on under a lease; the
//! lease decisions themselves (claim when free or expired, give back, finish
//! only while still the holder) are [`Repo`](ferry_core::store::Repo)'s.

use ferry_core::store::Leased;

use super::VerifyChunk;

impl Leased for VerifyChunk {
    fn holder(&self) -> Option<&str> {
        self.owner.as_deref()
    }

    fn lease_until_ms(&self) -> u64 {
        self.lease_until_ms
    }

    fn set_lease(&mut self, holder: Option<String>, until_ms: u64) {
        self.owner = holder;
        self.lease_until_ms = until_ms;
    }

    fn finished(&self) -> bool {
        self.done
    }
}
