#!/usr/bin/env bash
# Fetch the jars of the local Kafka broker (kafka/pom.xml: kafka_2.13 and its runtime
# dependencies) from Maven Central into $RETAIL_KAFKA_HOME/libs (default: <repo>/.kafka/libs),
# with strict checksums (mvn -C), and refuses them unless each matches kafka/jars.sha256.
# Skips the download when libs/ already matches the pom. The Python side
# (retail_pipeline.local.kafka_broker.ensure_jars) does the same on first start.
#
#   scripts/fetch-kafka.sh [--force]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
home="${RETAIL_KAFKA_HOME:-$root/.kafka}"
pom="${RETAIL_KAFKA_POM:-$root/kafka/pom.xml}"
libs="$home/libs"
marker="$libs/.pom-sha256"

command -v java >/dev/null || { echo "fetch-kafka: java not found (need Java 17+)" >&2; exit 1; }
command -v mvn >/dev/null || { echo "fetch-kafka: mvn not found (apt-get install maven)" >&2; exit 1; }
[[ -f "$pom" ]] || { echo "fetch-kafka: pom not found: $pom" >&2; exit 1; }
sums="$(dirname "$pom")/jars.sha256"
[[ -f "$sums" ]] || { echo "fetch-kafka: no jars.sha256 beside $pom" >&2; exit 1; }

# the same marker as the Python side: the SHA-256 of the pom followed by the checksums
digest="$(cat "$pom" "$sums" | sha256sum | cut -d' ' -f1)"
if [[ "${1:-}" != "--force" && -f "$marker" && "$(cat "$marker")" == "$digest" ]]; then
  echo "Kafka jars already in $libs"
  exit 0
fi

mkdir -p "$home"
staging="$(mktemp -d "$home/libs-fetch-XXXXXX")"
trap 'rm -rf "$staging"' EXIT
mvn -q -B -C -Dstyle.color=never dependency:copy-dependencies \
  -DoutputDirectory="$staging" -DincludeScope=runtime -f "$pom"
compgen -G "$staging/kafka_2.13-*.jar" >/dev/null \
  || { echo "fetch-kafka: mvn produced no kafka_2.13 jar" >&2; exit 1; }
(cd "$staging" && sha256sum --quiet --strict -c "$sums") \
  || { echo "fetch-kafka: a jar differs from $sums; refused" >&2; exit 1; }
[[ "$(cd "$staging" && ls -- *.jar | sort)" == "$(awk '{print $2}' "$sums" | sort)" ]] \
  || { echo "fetch-kafka: mvn fetched jars that $sums does not list; refused" >&2; exit 1; }
echo "$digest" >"$staging/.pom-sha256"
rm -rf "$libs"
mv "$staging" "$libs"
trap - EXIT
echo "Kafka jars in $libs ($(du -sh "$libs" | cut -f1))"
