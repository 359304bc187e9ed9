//! Root integration tests: the real `ferry` binary (and the definition it embeds)
//! against the MariaDB servers started by `scripts/testenv up`
//! (`source <(scripts/testenv env)` first). One binary, one module per area.

mod cases;
mod common;
