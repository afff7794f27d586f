//! `ibex-server`: relays, stores and authorizes commits (sync-server issue).
//!
//! Until the sync server lands this binary only reports what it is.

fn main() {
    println!("ibex-server {} (sync endpoint not implemented yet)", env!("CARGO_PKG_VERSION"));
}
