"""galgo with the official Python SDK of the 0.9 generation (apache-iggy 0.9.0, VSR framing):
log in, create a stream and a topic, send with a header, poll, and consume as a consumer group;
the same scope as sdk_smoke.py. Usage: sdk_smoke_next.py HOST:PORT

Exits 0 when every step did what Iggy would; raises (exit 1) at the first that did not.
"""

import asyncio
import datetime
import os
import sys

from apache_iggy import (
    AutoCommit,
    AutoCommitWhen,
    Consumer,
    IggyClient,
    PollingStrategy,
    SendMessage,
)

PARTITIONS = 2
MESSAGES_PER_PARTITION = 10
STEP_TIMEOUT_S = 30


async def send_and_poll(client: IggyClient) -> set:
    """Sends MESSAGES_PER_PARTITION messages to every partition and polls four back by offset."""
    sent = set()
    for partition in range(PARTITIONS):
        payloads = [f"p{partition}-m{i}" for i in range(MESSAGES_PER_PARTITION)]
        sent.update(payloads)
        messages = [SendMessage(p, user_headers={"origin": "python-0.9"}) for p in payloads]
        await client.send_messages("py-stream", "py-topic", partition, messages)
    topic = await client.get_topic("py-stream", "py-topic")
    assert topic.messages_count == len(sent), topic.messages_count

    polled = await client.poll_messages(
        "py-stream",
        "py-topic",
        consumer=Consumer.Single(1),
        polling_strategy=PollingStrategy.Offset(3),
        count=4,
        auto_commit=False,
        partition_id=1,
    )
    assert [m.offset() for m in polled] == [3, 4, 5, 6], [m.offset() for m in polled]
    assert polled[0].payload() == b"p1-m3", polled[0].payload()
    assert all(m.partition_id() == 1 for m in polled)
    assert all(m.id() != 0 for m in polled), "the SDK mints message ids"
    headers = polled[0].user_headers().to_scalar_dict()
    assert headers == {"origin": "python-0.9"}, headers
    return sent


async def main(address: str) -> None:
    client = IggyClient(address)
    await client.connect()
    await client.login_user("iggy", "iggy")
    await client.ping()

    await client.create_stream("py-stream")
    stream = await client.get_stream("py-stream")
    assert stream is not None and stream.name == "py-stream", stream
    await client.create_topic("py-stream", "py-topic", PARTITIONS)
    topic = await client.get_topic("py-stream", "py-topic")
    assert topic is not None and topic.partitions_count == PARTITIONS, topic

    sent = await send_and_poll(client)

    consumer = await client.consumer_group(
        "py-group",
        "py-stream",
        "py-topic",
        polling_strategy=PollingStrategy.Next(),
        batch_length=3,
        auto_commit=AutoCommit.When(AutoCommitWhen.PollingMessages()),
        poll_interval=datetime.timedelta(milliseconds=1),
    )
    received = set()
    iterator = consumer.iter_messages()
    while len(received) < len(sent):
        message = await asyncio.wait_for(iterator.__anext__(), STEP_TIMEOUT_S)
        payload = message.payload().decode()
        assert payload not in received, f"{payload} came twice"
        received.add(payload)
    assert received == sent, sent - received
    print(f"python sdk 0.9: {len(received)} messages consumed by the group")


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(sys.argv[1]), 120))
    # Every check has passed. As with sdk_smoke.py, leave without finalizing the SDK's Rust
    # runtime (its consumer's background task); a failed check raised above and exits non-zero.
    sys.stdout.flush()
    os._exit(0)
