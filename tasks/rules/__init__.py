"""Pure domain rules: values in, values out. Nothing here imports sqlalchemy, httpx or prefect."""
