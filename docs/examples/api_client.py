"""Run a pipeline through the tom_education REST API, follow its log, download its outputs.

Usage: python api_client.py URL TOKEN PIPELINE TARGET_ID PRODUCT_ID [PRODUCT_ID ...]
"""
import sys
import time
from pathlib import Path

import requests


def run_pipeline(base_url, token, pipeline, target, input_files, flags=None, download_to='.'):
    session = requests.Session()
    session.headers['Authorization'] = f'Token {token}'
    api = f'{base_url.rstrip("/")}/api/pipelineprocesses/'

    # 1. submit: 201 with the new process, 400 naming the field at fault, 503 if the queue is down
    response = session.post(api, json={
        'pipeline': pipeline, 'target': target, 'input_files': input_files, 'flags': flags or {},
    })
    if response.status_code == 400:
        raise SystemExit(f'Refused: {response.json()}')
    if response.status_code == 503:
        raise SystemExit(response.json()['detail'])
    response.raise_for_status()
    process = response.json()
    print(f'Started {process["identifier"]}')

    # 2. follow the log by cursor: each poll returns only the lines after it
    cursor = 0
    while True:
        page = session.get(f'{api}{process["id"]}/log/', params={'after': cursor}).json()
        for line in page['lines']:
            print(line['message'])
        cursor = page['next']
        if page['final']:
            break
        time.sleep(1)

    # 3. the final state, then every output file
    process = session.get(f'{api}{process["id"]}/').json()
    if process['state'] != 'created':
        raise SystemExit(f'{process["state"]}: {process["failure_message"]}')
    for output in process['outputs']['data_products']:
        path = Path(download_to) / output['file_name']
        with session.get(output['download'], stream=True) as download:
            download.raise_for_status()
            with path.open('wb') as handle:
                for chunk in download.iter_content(chunk_size=1024 * 1024):
                    handle.write(chunk)
        print(f'Saved {path}')
    return process


if __name__ == '__main__':
    url, token, pipeline, target, *products = sys.argv[1:]
    run_pipeline(url, token, pipeline, int(target), [int(product) for product in products])
