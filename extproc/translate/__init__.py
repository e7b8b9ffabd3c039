"""Translation between client and provider APIs through one internal representation per direction.

Each API has readers (its request → `ChatRequest`, its answer → `ChatAnswer`, its stream → events) and writers
(the other way), in its own module and one row of `transform.APIS`; any client API reaches any provider API by
reading one and writing the other, never by a converter per pair. Pure: documents in, documents out.
"""
