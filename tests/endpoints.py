"""A test client of the service's HTTP endpoints: metrics, health and readiness."""

from __future__ import annotations

import asyncio
import time

import aiohttp
from prometheus_client.parser import text_string_to_metric_families


class Endpoints:
    """The service's HTTP endpoints, as Prometheus and Kubernetes see them."""

    def __init__(self, session: aiohttp.ClientSession, port: int) -> None:
        self._session = session
        self._base = f"http://127.0.0.1:{port}"

    async def status(self, path: str) -> tuple[int, str]:
        async with self._session.get(self._base + path) as response:
            return response.status, await response.text()

    async def scrape(self) -> dict[str, float]:
        """Every sample, keyed by name and labels: `name{label="value"}`."""
        _, text = await self.status("/metrics")
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return samples

    async def until(self, sample: str, value: float, within: float = 30) -> None:
        """Scrape until `sample` has `value`."""
        deadline = time.monotonic() + within
        while (await self.scrape())[sample] != value:
            assert time.monotonic() < deadline, f"{sample} never reached {value}"
            await asyncio.sleep(0.05)

    async def wait_for(self, path: str, status: int, within: float = 30) -> str:
        deadline = time.monotonic() + within
        while True:
            try:
                got, text = await self.status(path)
            except aiohttp.ClientConnectionError:
                got, text = 0, "not listening"
            if got == status:
                return text
            assert time.monotonic() < deadline, f"{path} stayed {got} ({text.strip()})"
            await asyncio.sleep(0.1)

    async def buffers_full(self) -> bool:
        """Whether both internal queues hold all they may (intake is then held back)."""
        samples = await self.scrape()
        return all(
            samples[f'ingestor_buffer_items{{buffer="{name}"}}']
            == samples[f'ingestor_buffer_capacity_items{{buffer="{name}"}}']
            for name in ("received", "processed")
        )
