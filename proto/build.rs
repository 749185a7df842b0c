//! Generates the imaging.v1 client and server code with the vendored `protoc`,
//! so a fresh machine needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    config.bytes([".imaging.v1.UploadImageRequest.chunk"]);
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("imaging_descriptor.bin"))
        .compile_with_config(config, &["imaging/v1/ingest.proto"], &["."])?;
    println!("cargo:rerun-if-changed=imaging/v1/ingest.proto");
    Ok(())
}
