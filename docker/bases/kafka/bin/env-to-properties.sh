#!/bin/bash
# Prints server.properties from the environment, as apache/kafka's image maps it: every KAFKA_*
# variable but the JVM's (KAFKA_HEAP_OPTS, KAFKA_OPTS, ...) is a setting, its name without
# KAFKA_, in lower case, with ___ -> '-', __ -> '_' and _ -> '.' (KAFKA_LOG_DIRS -> log.dirs).
# Values are data: written escaped for java.util.Properties, never evaluated; a value with a
# control or non-ASCII character is refused (Kafka reads the file as ISO-8859-1).
set -euo pipefail
export LC_ALL=C

jvm_settings=" KAFKA_HEAP_OPTS KAFKA_OPTS KAFKA_JVM_PERFORMANCE_OPTS KAFKA_GC_LOG_OPTS \
KAFKA_LOG4J_OPTS KAFKA_JMX_OPTS KAFKA_DEBUG KAFKA_HOME KAFKA_VERSION "

while IFS= read -r -d '' entry; do
    name=${entry%%=*}
    value=${entry#*=}
    [[ $name == KAFKA_* && $jvm_settings != *" $name "* ]] || continue
    if [[ ! $name =~ ^KAFKA_[A-Z0-9]+(_+[A-Z0-9]+)*$ ]]; then
        echo "kafka: $name is not a setting's name (KAFKA_ then upper-case words)" >&2
        exit 1
    fi
    if [[ $value == *[![:print:]]* ]]; then
        echo "kafka: $name holds a control or non-ASCII character; refused" >&2
        exit 1
    fi
    key=${name#KAFKA_}
    key=${key,,}
    key=${key//___/-}
    key=${key//__/@}
    key=${key//_/.}
    key=${key//@/_}
    value=${value//\\/\\\\}
    if [[ $value == [[:space:]]* ]]; then
        value="\\$value"
    fi
    printf '%s=%s\n' "$key" "$value"
done < <(env -0 | sort -z)
