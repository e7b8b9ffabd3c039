"""Translation between client and provider APIs through one internal representation per direction.

Each API has a reader (its request → `ChatRequest`, its answer → `ChatAnswer`) and a writer (the other way);
any client API reaches any provider API by reading one and writing the other, never by a converter per pair.
Pure: documents in, documents out.
"""
