"""The one AI path: providers (offline and openai), the engine that runs and logs every call, the AI
functions, prices, and the prompt registry with its sandboxed template renderer."""
