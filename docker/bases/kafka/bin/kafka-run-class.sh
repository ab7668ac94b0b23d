#!/bin/bash
# Runs a class of Kafka's tools with the image's jars: a small heap and warnings only, on stderr.
set -euo pipefail
exec java -Xmx256m -XX:+UseSerialGC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile=/opt/kafka/config/tools-log4j2.properties \
    -cp '/opt/kafka/libs/*' "$@"
