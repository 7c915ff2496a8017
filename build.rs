// The migrations are embedded in the binary (`embed_migrations!`): a migration added, not only
// one edited, must rebuild it.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
