#!/bin/bash
# Entrypoint of the Kafka stand-in (docker/bases/kafka): writes config/server.properties from the
# KAFKA_* settings (env-to-properties.sh), formats the storage with CLUSTER_ID unless already
# formatted, and then the broker replaces this script (exec), so it gets the stop signal.
set -euo pipefail

config=/opt/kafka/config/server.properties
[[ -n ${CLUSTER_ID:-} ]] || {
    echo "kafka: CLUSTER_ID is not set (the KRaft cluster id the storage is formatted with)" >&2
    exit 1
}
/opt/kafka/bin/env-to-properties.sh >"$config"
[[ -s $config ]] || {
    echo "kafka: no KAFKA_* setting in the environment: nothing to write to $config" >&2
    exit 1
}
/opt/kafka/bin/kafka-storage.sh format --ignore-formatted --cluster-id "$CLUSTER_ID" \
    --config "$config"

# Split on blanks only (read -a neither globs nor evaluates): "-Xms256m -Xmx512m" -> two options.
read -r -a heap <<<"${KAFKA_HEAP_OPTS:--Xmx1G -Xms1G}"
read -r -a extra <<<"${KAFKA_OPTS:-}"
exec java "${heap[@]}" -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
    -Djava.awt.headless=true -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties \
    "${extra[@]}" -cp '/opt/kafka/libs/*' kafka.Kafka "$config"
