//! What the gRPC listener shares with HTTP, checked over the network.
