# conftest.py: hand the project's app to the flowrra fixtures
import pytest
import shop

from flowrra import Flowrra


@pytest.fixture
def flowrra_app() -> Flowrra:
    return shop.app  # flowrra_eager, flowrra_worker and flowrra_join use this app


@pytest.fixture(autouse=True)
def fresh_fakes() -> None:
    shop.outbox.clear()
    shop.gateway.__init__()  # type: ignore[misc]
