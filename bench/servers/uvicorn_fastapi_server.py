"""bench/asgi.py's uvicorn side: the same FastAPI app under uvicorn with uvloop
and httptools (its fastest settings), one process, no access log."""
import uvicorn
from common import HOST, port_from_argv, raise_nofile_limit
from fastapi_app import api

raise_nofile_limit()
uvicorn.run(api, host=HOST, port=port_from_argv(), loop="uvloop", http="httptools",
            access_log=False, log_level="warning")
