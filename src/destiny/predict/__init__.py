"""Prediction: top-K recommendations at any width, filters, metrics, writers.

    topk.py       top_k (one batch through a network), top_k_scores (a given score matrix):
                  chunked, memory batch × chunk, ties to the lower item index
    recommend.py  iter_recommendations / recommend over datasets, popularity baseline
    api.py        recommend_batch, predict_batch, as_batch: any x (SparseBatch, SparseDataset,
                  scipy.sparse, dense) — what Network.recommend / Network.predict delegate to
    inputs.py     examples to score: DSSTNE text through an index, or NetCDF; DSSTNE's -d
    labels.py     index files against layer widths, item lists, DSSTNE filter files
    filters.py    seen items (removed, not boosted as DSSTNE did) and the allowed catalogue
    writers.py    recs (DSSTNE's format), CSV and Parquet, atomically
    metrics.py    P@K, Recall@K (two ways), NDCG@K, MAP@K, HitRate@K, coverage
    evaluate.py   metrics of a network's or a recs file's lists against held-out items
    accuracy.py   top-1 / top-5 classification accuracy against one label per example
    encode.py     a layer's activations (embeddings) to .npy or NetCDF
"""
