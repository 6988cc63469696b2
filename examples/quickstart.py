"""The README's quick start: an I/O task, submitted and awaited on the embedded default."""

import asyncio

from flowrra import Flowrra, TaskStatus

app = Flowrra.from_urls()


@app.task()
async def send_email(to: str, subject: str) -> dict[str, str]:
    """Send an email asynchronously."""
    await asyncio.sleep(0.1)  # simulate sending
    print(f"Email sent to {to}: {subject}")
    return {"status": "sent", "to": to}


@app.task(max_retries=5, retry_delay=0.1)
async def fetch_data(url: str) -> dict[str, str]:
    return {"data": url}


async def main() -> None:
    async with app:
        task_id = await app.submit(send_email, "user@example.com", "Hello")
        result = await app.wait_for_result(task_id, timeout=10.0)
        print(f"Result: {result.result}")
        assert result.status is TaskStatus.SUCCESS

        # The typed way: mypy checks these arguments against fetch_data's signature.
        urgent = await fetch_data.with_options(priority=-1).submit("https://example.com")
        print((await app.wait_for_result(urgent, timeout=10.0)).result)


if __name__ == "__main__":
    asyncio.run(main())
