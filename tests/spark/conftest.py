"""One local Spark session (``local[2]``) shared by the Spark tests; they skip where pyspark,
pyarrow, pandas or Java is missing. Arrow batches are kept small so that a user's interactions
straddle two batches of ``mapInPandas``."""

from __future__ import annotations

import os
import shutil
import sys

import pytest


@pytest.fixture(scope="session")
def spark():
    pytest.importorskip("pyspark", reason="pip install destiny[spark] to run the Spark tests")
    pytest.importorskip("pyarrow", reason="pip install destiny[spark] to run the Spark tests")
    pytest.importorskip("pandas", reason="pip install destiny[spark] to run the Spark tests")
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        pytest.skip("Spark needs Java 17 or newer (no java on PATH, no JAVA_HOME)")
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    session = (SparkSession.builder.master("local[2]").appName("destiny-tests")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.shuffle.partitions", "4")
               .config("spark.default.parallelism", "2")
               .config("spark.sql.execution.arrow.maxRecordsPerBatch", "1000")
               .config("spark.driver.memory", "1g")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
