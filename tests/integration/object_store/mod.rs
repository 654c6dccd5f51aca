//! Object-store sync against real S3-compatible servers started here on
//! 127.0.0.1 free ports: `moto_server` for the publish protocol (conditional
//! GET/PUT) and three replicas under load, and `rclone serve s3` as a
//! second, independent implementation of the read path. Replicas are the
//! real binary (`riskserve serve --sync-from`), each with the standard
//! `AWS_*` variables; the test publishes through the library.

mod fleet;
mod support;
mod sync;
