#!/usr/bin/env bash
# kafka-broker-api-versions: what the compose healthchecks run.
exec java -Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
    -Dlog4j.configuration=file:/opt/kafka/config/tools-log4j.properties \
    -cp '/opt/kafka/libs/*' kafka.admin.BrokerApiVersionsCommand "$@"
