"""Where blobs come from: plain-blob mirrors, a partial git clone, or a local tree.

Every source implements :class:`lkfirmware.sources.base.BlobSource`; the fetcher
(:mod:`lkfirmware.fetcher`) drives them and owns verification and the cache.
"""
