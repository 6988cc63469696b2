"""A CPU-bound task in the process pool next to an I/O task that retries with backoff."""

import asyncio
import os

from flowrra import Config, ExecutorConfig, Flowrra

app = Flowrra(Config(executor=ExecutorConfig(num_workers=4, cpu_workers=2)))
attempts = {"n": 0}


@app.task(cpu_bound=True)
def compute_heavy(n: int) -> dict[str, int]:
    """Runs in another process: define CPU tasks at module level."""
    return {"sum": sum(i * i for i in range(n)), "pid": os.getpid()}


@app.task(max_retries=3, retry_delay=0.1)
async def flaky() -> str:
    attempts["n"] += 1
    if attempts["n"] < 3:
        raise ConnectionError("try again")
    return f"succeeded on attempt {attempts['n']}"


async def main() -> None:
    async with app:
        cpu_id = await app.submit(compute_heavy, 1_000_000)
        flaky_id = await app.submit(flaky)
        cpu = await app.wait_for_result(cpu_id, timeout=60)
        retried = await app.wait_for_result(flaky_id, timeout=10)
    print(f"compute_heavy ran in pid {cpu.result['pid']} (this is {os.getpid()})")
    print(f"flaky: {retried.result} after {retried.retries} retries")
    assert cpu.result["pid"] != os.getpid() and retried.retries == 2


if __name__ == "__main__":
    asyncio.run(main())
