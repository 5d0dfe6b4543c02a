"""The audit view in the Airflow UI (plugin code: imports Airflow, unlike the engine).

``app`` holds the FastAPI app and its pages, ``auth`` Airflow's authentication and authorization,
``queries`` the reads of the audit tables, ``filters`` the query string, ``chart`` the SVG chart.
``ecr_mirror_plugin.py`` in the plugins folder registers the app and its links with Airflow.
"""
