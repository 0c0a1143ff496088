// Placeholder until the type table lands (helper: gguf).
