"""Reads a table written by the file sink back with pyarrow (the Apache Parquet C++
and ORC readers), as an independent check: prints JSON with every visible file, every
row (user_id, ts in ms, item_id, price as text, the partition directory it is in, the
partition its event time belongs in, computed here, site and is_new), the schemas, and
the partitions holding _SUCCESS, the compression codecs the files name, and files
still staged for publication (pending files, S3 upload markers).

    python3 read_table.py ROOT [S3_ENDPOINT]
"""
import datetime
import json
import sys
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.orc as po
import pyarrow.parquet as pq

root = sys.argv[1]


class Hdfs:
    """The bits of a pyarrow file system the walk below uses, over hdfs-native's client
    (pyarrow's own HDFS client needs libhdfs and a Hadoop install)."""

    def __init__(self, url):
        import hdfs_native
        self.client = hdfs_native.Client(url)

    def get_file_info(self, selector):
        class Info:
            pass
        for st in self.client.list_status(selector.base_dir, recursive=True):
            info = Info()
            info.path = st.path
            info.type = pafs.FileType.Directory if st.isdir else pafs.FileType.File
            yield info

    def open_input_file(self, path):
        with self.client.read(path) as f:
            return pa.BufferReader(f.read())


if root.startswith("hdfs://"):
    authority, _, path = root[len("hdfs://"):].partition("/")
    fs = Hdfs("hdfs://" + authority)
    base = "/" + path.rstrip("/")
elif root.startswith("s3://"):
    fs = pafs.S3FileSystem(access_key="test", secret_key="test", region="us-east-1",
                           endpoint_override=sys.argv[2], scheme="http")
    base = root[len("s3://"):].rstrip("/")
else:
    fs = pafs.LocalFileSystem()
    base = root.rstrip("/")
zone = ZoneInfo("Asia/Shanghai")
out = {"visible": [], "success": [], "rows": [], "schemas": [], "codecs": [], "staged": []}
for info in fs.get_file_info(pafs.FileSelector(base, recursive=True)):
    if info.type != pafs.FileType.File:
        continue
    rel = info.path[len(base):].lstrip("/")
    parts = rel.split("/")
    if rel.startswith(("_ferroflow/pending/", "_ferroflow/uploads/")):
        out["staged"].append(rel)
    if any(p.startswith(("_", ".")) for p in parts[:-1]):
        continue
    name, directory = parts[-1], "/".join(parts[:-1])
    if name == "_SUCCESS":
        out["success"].append(directory)
        continue
    if name.startswith(("_", ".")):
        continue
    out["visible"].append(rel)
    f = fs.open_input_file(info.path)
    if name.endswith(".orc"):
        orc = po.ORCFile(f)
        codecs = [orc.compression]
        table = orc.read()
    else:
        parquet = pq.ParquetFile(f)
        meta = parquet.metadata
        codecs = [meta.row_group(g).column(c).compression
                  for g in range(meta.num_row_groups) for c in range(meta.num_columns)]
        table = parquet.read()
    for codec in codecs:
        if codec not in out["codecs"]:
            out["codecs"].append(codec)
    schema = str(table.schema.remove_metadata())
    if schema not in out["schemas"]:
        out["schemas"].append(schema)
    ts_col = table.column("ts")
    ts = ts_col.cast(pa.timestamp("ms", tz=ts_col.type.tz)).cast(pa.int64()).to_pylist()
    sites = table.column("site").to_pylist()
    news = table.column("is_new").to_pylist()
    users = table.column("user_id").to_pylist()
    items = table.column("item_id").to_pylist()
    prices = table.column("price").to_pylist()
    for u, t, i, p, site, new in zip(users, ts, items, prices, sites, news):
        local = datetime.datetime.fromtimestamp(t / 1000, zone)
        local = local.replace(minute=local.minute - local.minute % 5, second=0, microsecond=0)
        expected = local.strftime("dt=%Y-%m-%d/hm=%H%M")
        out["rows"].append([u, t, i, None if p is None else str(p), directory, expected, site, new])
print(json.dumps(out))
