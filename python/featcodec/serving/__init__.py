"""featcodec.serving: split inference over gRPC.

The client runs the network's head and a rate bank's encoder and streams the
bank's messages; the server decodes them with the same bank, runs the tail
and answers each message (top-k classes, or a label map).  The protocol is
inference.proto beside this file; docs/serving.md says what each side holds
and how to deploy replicas.  Needs grpcio, protobuf and torch
(``pip install featcodec[serve]``)::

    from featcodec.serving import Client, Limits, SplitServer, Tail, BackgroundServer
    server = SplitServer(bank, Tail(tail, bank.feature_shape), Limits(max_batch=16))
    with BackgroundServer(server, "127.0.0.1:0") as running:
        with Client(running.address, bank, head, target_bpp=0.01) as client:
            answers = client.infer(images)
"""

from ._protocol import Answer, ErrorCode, ServingError
from .client import Client, Stream, StreamClosed
from .server import BackgroundServer, Limits, SplitServer, serve_forever, use_torch_threads
from .tail import NETWORKS, Tail, TailOutput, load_network

__all__ = ["Answer", "BackgroundServer", "Client", "ErrorCode", "Limits", "NETWORKS", "ServingError", "SplitServer",
           "Stream", "StreamClosed", "Tail", "TailOutput", "load_network", "serve_forever", "use_torch_threads"]
