from pathlib import Path

from setuptools import find_namespace_packages, setup

setup(
    name='tom-education',
    version='2.0.0.dev0',
    description='Data pipelines for the TOM Toolkit, run on Celery workers',
    long_description=Path(__file__).with_name('README.rst').read_text(encoding='utf-8'),
    long_description_content_type='text/x-rst',
    license='GPL-3.0-or-later',
    python_requires='>=3.11',
    packages=find_namespace_packages(include=['tom_education', 'tom_education.*']),
    include_package_data=True,
    package_data={'tom_education': ['templates/tom_education/*.html', 'templates/tom_education/*/*.html']},
    install_requires=[
        'tomtoolkit>=3.1,<3.2',
        'Django>=5.2,<5.3',
        'celery[redis]>=5.3,<6',
        'astropy>=6.0',
        'numpy',
        'drf-spectacular>=0.27',
        'psutil>=5.9',
        'photutils>=3.0',
        'scipy>=1.13',
        'matplotlib>=3.8',
        'Pillow>=10',
        'imageio>=2.31',
        'imageio-ffmpeg>=0.5',
    ],
    extras_require={
        'test': [
            'pytest>=8',
            'pytest-django>=4.8',
            'psycopg[binary]>=3.1',
            'ruff',
            'sphinx>=7',
            'playwright>=1.40',
            'schemathesis>=4',
            'moto[server]>=5',
            'django-storages[s3]>=1.14',
        ],
        'postgres': ['psycopg[binary]>=3.1'],
        's3': ['django-storages[s3]>=1.14'],
    },
    classifiers=[
        'Framework :: Django',
        'Framework :: Django :: 5.2',
        'Programming Language :: Python :: 3',
        'Topic :: Scientific/Engineering :: Astronomy',
    ],
)
