//! Compiles `schema/` with protox (pure Rust, so no `protoc` on the build machine).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=schema");
    let descriptors = protox::compile(["disco/v1/disco.proto"], ["schema"])?;
    prost_build::Config::new()
        .bytes(["."])
        .compile_fds(descriptors)?;
    Ok(())
}
