"""Feishu long connection (长连接): the protobuf frames, the endpoint handshake, the client."""
