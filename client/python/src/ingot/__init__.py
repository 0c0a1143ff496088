"""ingot's Python client: the ingot.v1 gRPC stubs (generated from proto/ when the
package is built) and a typed wrapper, Client."""
from ingot.client import (Chunk, Client, Completion, IngotError, LoadProgress, ModelInfo, QuantizeProgress,
                          QuantizeResult, TokenLogprob, Usage)

__all__ = ["Chunk", "Client", "Completion", "IngotError", "LoadProgress", "ModelInfo", "QuantizeProgress",
           "QuantizeResult", "TokenLogprob", "Usage"]
