//! Compiles the KServe V2 gRPC protobuf (feature `grpc`) with protox, a protobuf compiler in
//! Rust, so that building needs no `protoc`.

fn main() {
    println!("cargo:rerun-if-changed=proto/grpc_predict_v2.proto");
    #[cfg(feature = "grpc")]
    {
        let files = protox::compile(["proto/grpc_predict_v2.proto"], ["proto"])
            .unwrap_or_else(|e| panic!("proto/grpc_predict_v2.proto: {e}"));
        tonic_prost_build::configure()
            .build_server(true)
            .build_client(true)
            .build_transport(false)
            // prost's codec with a look at an inference request's bytes before decoding.
            .codec_path("crate::http::grpc::CheckedCodec")
            .compile_fds(files)
            .unwrap_or_else(|e| panic!("generating the gRPC service: {e}"));
    }
}
