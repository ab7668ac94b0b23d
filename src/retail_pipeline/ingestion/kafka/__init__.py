"""Kafka transport: a local single-node broker (KRaft) and the clients that talk to it."""
