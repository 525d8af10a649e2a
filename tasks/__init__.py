"""The domain of minyi, grouped by what a module may touch: rules/ (pure), adapters/ (outside parties),
store/ (the database), stages/ (each stage's SQL and policy); config, runtime (adapters chosen), texts.
"""
