# shop.py: the project's tasks (an online shop)
from flowrra import Flowrra

app = Flowrra()

outbox: list[str] = []  # stands in for the mail server


class GatewayDown(Exception):
    """The payment provider did not answer: worth a retry."""


class Gateway:
    """Stands in for the payment provider; a test makes it fail a few times."""

    def __init__(self) -> None:
        self.failures_left = 0
        self.calls = 0

    async def charge(self, cents: int) -> str:
        self.calls += 1
        if self.failures_left:
            self.failures_left -= 1
            raise GatewayDown("no answer")
        return f"ch_{self.calls}"


gateway = Gateway()


@app.task()
async def send_receipt(order_id: int, email: str) -> str:
    if "@" not in email:
        raise ValueError(f"not an email address: {email!r}")
    message = f"To {email}: your receipt for order {order_id}"
    outbox.append(message)
    return message


@app.task(max_retries=3, retry_delay=30, retry_on=(GatewayDown,))
async def charge(order_id: int, cents: int) -> dict[str, object]:
    charge_id = await gateway.charge(cents)
    return {"order": order_id, "charge": charge_id, "cents": cents}


@app.task()
def invoice_total(lines: list[int]) -> int:  # a plain def: runs in a thread on a worker
    return sum(lines)
