//! Rebuilds the crate when a migration is added or changed: `refinery::embed_migrations!`
//! reads `sql/postgres` at compile time, and cargo does not track files a macro reads.

fn main() {
    println!("cargo:rerun-if-changed=../sql/postgres");
}
