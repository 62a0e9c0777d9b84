"""The gateway: sans-I/O protocol cores, asyncio edges and the runtime that wires them."""
