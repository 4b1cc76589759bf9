"""A Kafka client for the kafka plugin's tests (kafka-python, installed by kafka.sh):
what the tests produce and consume, and how they read the broker's own state (a
group's committed offsets) without going through the plugin under test. Every
command prints one JSON document on stdout.

    kafka_client.py BOOTSTRAP create-topic TOPIC PARTITIONS
    kafka_client.py BOOTSTRAP produce TOPIC PARTITION PREFIX COUNT [TIMESTAMP_MS]
    kafka_client.py BOOTSTRAP consume GROUP TOPIC COUNT       (commits, then leaves)
    kafka_client.py BOOTSTRAP committed GROUP TOPIC
    kafka_client.py BOOTSTRAP hold GROUP TOPIC SECONDS        (stays a member)

`produce` sends and flushes one record at a time, so each record is its own batch:
with tansu's memory storage offsets count batches, and one record per batch keeps
offsets, end offsets and lag exact.
"""

import json
import sys
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic


# tansu completes a group join only after about half the session timeout: the
# smallest timeout kafka-python allows keeps a join near 3 s instead of 20 s.
GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}


def out(doc):
    print(json.dumps(doc), flush=True)


def main():
    bootstrap, command, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    if command == "create-topic":
        topic, partitions = args[0], int(args[1])
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
        admin.create_topics([NewTopic(topic, partitions, 1)])
        admin.close()
        out({"created": topic, "partitions": partitions})
    elif command == "produce":
        topic, partition, prefix, count = args[0], int(args[1]), args[2], int(args[3])
        timestamp = int(args[4]) if len(args) > 4 else None
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
        offsets = []
        for i in range(count):
            future = producer.send(
                topic,
                value=f"{prefix}-{i}".encode(),
                partition=partition,
                timestamp_ms=timestamp,
            )
            producer.flush()
            offsets.append(future.get(timeout=10).offset)
        producer.close()
        out({"offsets": offsets})
    elif command == "consume":
        group, topic, count = args[0], args[1], int(args[2])
        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **GROUP,
        )
        seen = []
        deadline = time.time() + 30
        while len(seen) < count and time.time() < deadline:
            for tp, records in consumer.poll(timeout_ms=1000).items():
                for r in records:
                    seen.append(
                        {"partition": tp.partition, "offset": r.offset, "value": r.value.decode()}
                    )
        consumer.commit()
        consumer.close()
        out({"records": seen})
    elif command == "committed":
        group, topic = args[0], args[1]
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        partitions = consumer.partitions_for_topic(topic) or set()
        answer = {str(p): consumer.committed(TopicPartition(topic, p)) for p in sorted(partitions)}
        consumer.close(autocommit=False)
        out(answer)
    elif command == "hold":
        group, topic, seconds = args[0], args[1], float(args[2])
        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            **GROUP,
        )
        deadline = time.time() + seconds
        announced = False
        while time.time() < deadline:
            consumer.poll(timeout_ms=200)
            if not announced and consumer.assignment():
                out({"member": True, "assignment": sorted(tp.partition for tp in consumer.assignment())})
                announced = True
        consumer.close(autocommit=False)
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
